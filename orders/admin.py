from django.contrib import admin, messages

from orders import services
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
    list_display = [
        "order",
        "kind",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "updated_at",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["order__number"]
    readonly_fields = [f.name for f in FollowUp._meta.fields]
    actions = ["replay_dead_letters"]

    def has_add_permission(self, request):
        return False  # follow-ups are born with their order, never on their own

    @admin.action(description="Replay selected dead letters", permissions=["change"])
    def replay_dead_letters(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        replayed = services.follow_up_replay(follow_up_ids=ids)
        skipped = len(ids) - replayed
        self.message_user(request, f"Replayed {replayed} dead letter(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} that were not dead.", messages.WARNING)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["order", "created_at"]
    exclude = ["pdf"]


# --- Recurring and delayed jobs (issue 5) ---------------------------------------------------------
from orders.models import (  # noqa: E402
    AbandonedCart,
    BeatLease,
    JobRun,
    LowStockAlert,
    OrderShipment,
    SalesReport,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by jobs, read by people."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ["job", "period", "outcome", "attempts", "started_at", "finished_at", "counts"]
    list_filter = ["job", "outcome"]
    search_fields = ["job", "period"]


@admin.register(BeatLease)
class BeatLeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "holder", "acquired_at", "expires_at"]


@admin.register(SalesReport)
class SalesReportAdmin(ReadOnlyAdmin):
    list_display = ["day", "orders", "revenue", "created_at"]


@admin.register(LowStockAlert)
class LowStockAlertAdmin(ReadOnlyAdmin):
    list_display = ["product", "stock", "created_at", "notified_at", "resolved_at"]


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
