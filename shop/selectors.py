"""Reads of the catalog for pages and the API."""

from django.db.models import QuerySet

from shop.models import Category, Product


def category_list() -> QuerySet[Category]:
    return Category.objects.all()


def product_list(*, category_slug: str | None = None) -> QuerySet[Product]:
    products = Product.objects.select_related("category")
    if category_slug:
        products = products.filter(category__slug=category_slug)
    return products


def product_get(*, sku: str) -> Product | None:
    return Product.objects.select_related("category").filter(sku=sku).first()


def products_by_sku(skus) -> dict[str, Product]:
    return {product.sku: product for product in Product.objects.filter(sku__in=list(skus))}
