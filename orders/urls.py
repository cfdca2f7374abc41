from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("checkout/", views.checkout, name="checkout"),
    path("orders/<str:order_id>/", views.order_detail, name="order_detail"),
    path("orders/<str:order_id>/invoice.pdf", views.invoice_pdf, name="invoice_pdf"),
]
