from django.contrib import admin

from orders.models import FollowUp, Invoice, Order, OrderLine


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    readonly_fields = ["product", "sku", "name", "unit_price", "quantity"]
    can_delete = False


class FollowUpInline(admin.TabularInline):
    model = FollowUp
    extra = 0
    fields = ["kind", "status", "attempts", "next_attempt_at", "last_error", "updated_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "email", "total", "created_at", "shipment_reference"]
    search_fields = ["number", "email", "id"]
    readonly_fields = [f.name for f in Order._meta.fields]
    inlines = [OrderLineInline, FollowUpInline]


@admin.register(FollowUp)
class FollowUpAdmin(admin.ModelAdmin):
    list_display = ["order", "kind", "status", "attempts", "next_attempt_at", "updated_at"]
    list_filter = ["status", "kind"]
    search_fields = ["order__number"]
    readonly_fields = [f.name for f in FollowUp._meta.fields]


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["order", "created_at"]
    exclude = ["pdf"]
