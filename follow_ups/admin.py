from datetime import UTC

from django.contrib import admin, messages

from follow_ups import services
from follow_ups.models import FollowUp, RelayState


@admin.register(FollowUp)
class FollowUpAdmin(admin.ModelAdmin):
    # The id is the number Flower shows in each task's arguments ("[42] invoice CS-…").
    list_display = [
        "id",
        "label",
        "kind",
        "status",
        "attempts",
        "next_attempt",
        "error_summary",
        "updated",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["label", "subject", "key"]
    readonly_fields = [f.name for f in FollowUp._meta.fields]
    actions = ["replay_dead_letters"]

    class Media:
        css = {"all": ["follow_ups/admin.css"]}

    def has_add_permission(self, request):
        return False  # follow-ups are written by the transaction that decides them

    @admin.display(description="Next attempt at", ordering="next_attempt_at")
    def next_attempt(self, follow_up: FollowUp) -> str:
        return _utc(follow_up.next_attempt_at)

    @admin.display(description="Updated at", ordering="updated_at")
    def updated(self, follow_up: FollowUp) -> str:
        return _utc(follow_up.updated_at)

    @admin.display(description="Last error", ordering="last_error")
    def error_summary(self, follow_up: FollowUp) -> str:
        """The list shows the error's first 160 characters; the row's page shows all of it."""
        error = follow_up.last_error or ""
        return error if len(error) <= 160 else f"{error[:159]}…"

    def get_search_results(self, request, queryset, search_term):
        # An id as Flower and the logs show it ("42", "#42", "[42]") finds that row alone, not
        # every row whose key or label happens to contain the digits.
        digits = search_term.strip().strip("#[]")
        if digits.isdigit():
            return queryset.filter(pk=int(digits)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.action(description="Replay selected dead letters", permissions=["change"])
    def replay_dead_letters(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        replayed = services.follow_up_replay(follow_up_ids=ids)
        skipped = len(ids) - replayed
        self.message_user(request, f"Replayed {replayed} dead letter(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} that were not dead.", messages.WARNING)


def _utc(moment) -> str:
    """Short enough to keep the list's columns in view on a laptop: "8 Dec 01:38" (UTC, as every
    time here); the row's own page has the exact moment."""
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %H:%M}"


@admin.register(RelayState)
class RelayStateAdmin(admin.ModelAdmin):
    list_display = ["holder", "ticked_at", "published", "recovered", "republished", "lag_seconds"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
