from django.conf import settings
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from orders import selectors
from orders.models import Invoice, Order, OrderLine


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    readonly_fields = ["product", "sku", "name", "unit_price", "quantity"]
    can_delete = False

    # What was bought and paid for: no line is added to, or changed in, a placed order.
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OrderFollowUpsMixin:
    """The order's follow-ups from the ledger, each linked to its row (with its id, as in Flower)."""

    @admin.display(description="Follow-ups")
    def follow_ups(self, order):
        rows = selectors.order_follow_ups(order)
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">#{} {}</a>: {} after {} attempt{} {}',
            (
                (
                    reverse("admin:follow_ups_followup_change", args=[row.pk]),
                    row.pk,
                    row.kind_label,
                    row.status,
                    row.attempts,
                    "" if row.attempts == 1 else "s",
                    row.last_error[:200],
                )
                for row in rows
            ),
        )


@admin.register(Order)
class OrderAdmin(OrderFollowUpsMixin, admin.ModelAdmin):
    list_display = ["number", "email", "total", "created_at", "shipment_reference"]
    search_fields = ["number", "email", "id"]
    readonly_fields = [f.name for f in Order._meta.fields] + ["follow_ups", "watch"]
    inlines = [OrderLineInline]

    def has_add_permission(self, request):
        return False  # an order is placed by checkout, in the transaction that writes its effects

    def has_change_permission(self, request, obj=None):
        return False  # read-only: every field is checkout's; the page is for looking and linking

    def view_on_site(self, order):
        # The customer's own page ("View on site"): the unguessable id is its access token.
        return reverse("orders:order_detail", args=[order.pk])

    @admin.display(description="Watch it")
    def watch(self, order):
        return format_html(
            '<a href="{}">the customer\'s page</a> · <a href="{}">/ops/</a> · '
            '<a href="{}/tasks" target="_blank" rel="noopener">Flower</a> '
            "(search the tasks for {}: each follow-up's arguments carry the order number)",
            reverse("orders:order_detail", args=[order.pk]),
            reverse("ops:dashboard"),
            settings.FLOWER_URL,
            order.number,
        )


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["invoice_number", "order", "created_at"]
    search_fields = ["=number", "order__number"]
    exclude = ["pdf"]

    @admin.display(description="Number", ordering="number")
    def invoice_number(self, invoice: Invoice) -> str:
        return invoice.display_number

    # Rendered by the invoice follow-up only: an invoice added here would be an empty PDF that the
    # follow-up then takes for the rendered one, and the customer downloads nothing.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- What the recurring and delayed jobs keep -----------------------------------------------------
from orders.models import AbandonedCart, OrderShipment, SalesReport  # noqa: E402


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by jobs, read by people."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SalesReport)
class SalesReportAdmin(ReadOnlyAdmin):
    list_display = ["day", "orders", "revenue", "created_at"]


@admin.register(OrderShipment)
class OrderShipmentAdmin(ReadOnlyAdmin):
    list_display = [
        "order",
        "shipped_at",
        "shipped_email_sent_at",
        "review_due_at",
        "review_sent_at",
    ]


@admin.register(AbandonedCart)
class AbandonedCartAdmin(ReadOnlyAdmin):
    list_display = ["email", "touched_at", "reminded_at"]
    exclude = ["session_key"]
