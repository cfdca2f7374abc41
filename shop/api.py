"""The catalog's JSON API."""

from ninja import Router, Schema

from shop import selectors

router = Router(tags=["catalog"])


class ProductOut(Schema):
    sku: str
    name: str
    category: str
    price: str
    stock: int


class ProductListOut(Schema):
    items: list[ProductOut]


@router.get("/products/", response=ProductListOut)
def product_list(request):
    return {
        "items": [
            {
                "sku": product.sku,
                "name": product.name,
                "category": product.category.slug,
                "price": f"{product.price:.2f}",
                "stock": product.stock,
            }
            for product in selectors.product_list()
        ]
    }
