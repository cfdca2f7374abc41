"""The follow-up ledger, run in the test's own process.

``follow_ups_run`` runs each waiting row through the engine's real service
(``follow_ups.services.follow_up_run``: claim, effect, outcome), as a worker would; unit tests use
it to see what a job's rows do. It is not eager mode: the job under test only writes rows, and the
integration tests run the same rows on a real worker.
"""

import contextlib

from django.db.models import Q
from django.utils import timezone

from follow_ups.models import FollowUp
from follow_ups.services import follow_up_run


def follow_ups_run(*, kind: str | None = None) -> list[FollowUp]:
    """Run every pending row, and every retry that is due, (of ``kind``) once; return the rows as
    they ended."""
    rows = FollowUp.objects.filter(
        Q(status=FollowUp.Status.PENDING)
        | Q(status=FollowUp.Status.RETRYING, next_attempt_at__lte=timezone.now())
    )
    if kind:
        rows = rows.filter(kind=kind)
    ids = list(rows.order_by("pk").values_list("pk", flat=True))
    for pk in ids:
        # A failure is recorded on the row (retrying or dead), as on a worker.
        with contextlib.suppress(Exception):
            follow_up_run(follow_up_id=pk)
    return list(FollowUp.objects.filter(pk__in=ids).order_by("pk"))
