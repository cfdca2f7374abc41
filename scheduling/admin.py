from django.contrib import admin

from scheduling.models import JobRun, Lease


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by beat, the relay and the jobs; read by people."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = [
        "job",
        "period",
        "outcome",
        "attempts",
        "started_at",
        "finished_at",
        "counts",
        "error",
    ]
    list_filter = ["job", "outcome"]
    search_fields = ["job", "period", "error"]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "holder", "acquired_at", "expires_at"]
