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
