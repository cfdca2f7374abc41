from django.contrib import admin

from shop.models import Category, LowStockAlert, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "category", "price", "stock"]
    list_filter = ["category"]
    search_fields = ["sku", "name"]


@admin.register(LowStockAlert)
class LowStockAlertAdmin(admin.ModelAdmin):
    """Written by the low-stock job, read by people; its emails are follow-ups."""

    list_display = ["product", "stock", "created_at", "notified_at", "resolved_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
