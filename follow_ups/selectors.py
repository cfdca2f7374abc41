"""Reads of the ledger for pages, the API and /ops/."""

from django.db.models import Count, Q

from follow_ups import breakers, registry
from follow_ups.models import Breaker, FollowUp, RelayState


def follow_ups_of(*, subject: str, kinds: list[str] | None = None) -> list[FollowUp]:
    rows = FollowUp.objects.filter(subject=subject)
    if kinds is not None:
        rows = rows.filter(kind__in=kinds)
    return list(rows.order_by("pk"))


def follow_ups_of_many(*, subjects: list[str], kinds: list[str] | None = None) -> dict:
    """Rows per subject, for a page of subjects, in one query."""
    rows = FollowUp.objects.filter(subject__in=subjects)
    if kinds is not None:
        rows = rows.filter(kind__in=kinds)
    by_subject: dict[str, list[FollowUp]] = {subject: [] for subject in subjects}
    for row in rows.order_by("pk"):
        by_subject[row.subject].append(row)
    return by_subject


def dead_letter_ids(*, kind: str | None = None, label: str | None = None) -> list[int]:
    query = Q(status=FollowUp.Status.DEAD)
    if kind:
        query &= Q(kind=kind)
    if label:
        query &= Q(label=label)
    return list(FollowUp.objects.filter(query).values_list("pk", flat=True))


def relay_state_get() -> RelayState | None:
    return RelayState.objects.filter(pk=1).first()


def label_exists(*, label: str) -> bool:
    return FollowUp.objects.filter(label=label).exists()


def breakers_overview() -> list[dict]:
    """Each provider's breaker for /ops/, /metrics and the failure lab: state, since when, how
    many follow-ups wait for it."""
    providers = sorted({kind.provider for kind in registry.kinds() if kind.provider})
    rows = {row.provider: row for row in Breaker.objects.filter(provider__in=providers)}
    waiting = {
        kind: count
        for kind, count in FollowUp.objects.filter(status=FollowUp.Status.WAITING)
        .values_list("kind")
        .annotate(count=Count("pk"))
        .values_list("kind", "count")
    }
    overview = []
    for provider in providers:
        row = rows.get(provider) or Breaker(provider=provider)
        overview.append(
            {
                "provider": provider,
                "state": row.state,
                "state_label": row.get_state_display(),
                "since": row.opened_at,
                "failures": row.failures,
                "waiting": sum(waiting.get(kind, 0) for kind in breakers.provider_kinds(provider)),
                "probe_at": row.probe_at,
                "last_error": row.last_error,
            }
        )
    return overview
