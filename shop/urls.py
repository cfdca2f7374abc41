from django.urls import path, register_converter

from shop import views


class SkuConverter:
    """SKUs are letters, digits, dashes and dots; anything else in their place is a 404."""

    regex = r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SkuConverter, "sku")

app_name = "shop"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("category/<slug:category_slug>/", views.catalog, name="category"),
    path("products/<sku:sku>/", views.product_detail, name="product_detail"),
    path("products/<sku:sku>/image.svg", views.product_image, name="product_image"),
    path("cart/", views.cart_detail, name="cart_detail"),
    path("cart/add/<sku:sku>/", views.cart_add, name="cart_add"),
    path("cart/update/<sku:sku>/", views.cart_update, name="cart_update"),
    path("cart/remove/<sku:sku>/", views.cart_remove, name="cart_remove"),
]
