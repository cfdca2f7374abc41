"""Reads of the ledger for pages, the API and /ops/."""

from django.db.models import Q

from follow_ups.models import FollowUp, RelayState


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
