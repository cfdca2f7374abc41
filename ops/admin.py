from django.contrib import admin

from ops.models import WarehouseFaults


@admin.register(WarehouseFaults)
class WarehouseFaultsAdmin(admin.ModelAdmin):
    list_display = ("latency_ms", "failure_rate", "outage", "updated_at")
