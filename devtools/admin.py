from django.contrib import admin

from devtools.models import EmailFaults, WarehouseFaults


@admin.register(EmailFaults)
class EmailFaultsAdmin(admin.ModelAdmin):
    list_display = ["latency_ms", "error_rate", "poison_recipient", "updated_at"]


@admin.register(WarehouseFaults)
class WarehouseFaultsAdmin(admin.ModelAdmin):
    list_display = ["latency_ms", "failure_rate", "outage", "updated_at"]
