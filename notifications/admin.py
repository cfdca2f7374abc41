from django.contrib import admin

from notifications.models import EmailDelivery, OutboxMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by the sender, read by people: a delivery row added or marked sent by hand would
    make the real email a repeat that is never sent (its purpose key says it already was)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["purpose_key", "recipient", "subject", "status", "attempts", "sent_at"]
    list_filter = ["status"]
    search_fields = ["purpose_key", "recipient"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["subject", "recipients", "created_at"]
