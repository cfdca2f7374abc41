from django import forms
from django.contrib import admin, messages

from shop.models import Category, LowStockAlert, Product
from shop.services import StockWouldGoNegative, product_stock_adjust


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position"]


class ProductForm(forms.ModelForm):
    stock_change = forms.IntegerField(
        required=False,
        initial=0,
        label="Stock change",
        help_text="Received +12, damaged −2. Added to the stock as it is when you save, so sales "
        "made while this page was open are kept.",
    )

    class Meta:
        model = Product
        fields = ["sku", "name", "category", "description", "price", "stock", "hue"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Stock is set when a product is added; after that it only changes by adjustments (a delta
    applied with ``F()``): a form opened before three sales must not write the old count back."""

    form = ProductForm
    list_display = ["sku", "name", "category", "price", "stock"]
    list_filter = ["category"]
    search_fields = ["sku", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["stock"] if obj else []

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "stock_change"]
        return [*fields, "stock_change"] if obj else fields

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Every field but the stock, then the stock as a delta.
        fields = [name for name in form.changed_data if name != "stock_change"]
        if fields:
            obj.save(update_fields=fields)
        delta = form.cleaned_data.get("stock_change") or 0
        if delta:
            try:
                obj.stock = product_stock_adjust(product_id=obj.pk, change=delta)
            except StockWouldGoNegative as exc:
                messages.error(request, f"Stock not changed: {exc}")


@admin.register(LowStockAlert)
class LowStockAlertAdmin(admin.ModelAdmin):
    """Written by the low-stock job, read by people; its emails are follow-ups."""

    list_display = ["product", "stock", "created_at", "notified_at", "resolved_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
