from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("category/<slug:category_slug>/", views.catalog, name="category"),
    path("products/<str:sku>/", views.product_detail, name="product_detail"),
    path("products/<str:sku>/image.svg", views.product_image, name="product_image"),
    path("cart/", views.cart_detail, name="cart_detail"),
    path("cart/add/<str:sku>/", views.cart_add, name="cart_add"),
    path("cart/update/<str:sku>/", views.cart_update, name="cart_update"),
    path("cart/remove/<str:sku>/", views.cart_remove, name="cart_remove"),
]
