"""The dead-letter digest: staff hear by email of the follow-ups that became dead letters.

The hourly job lists the dead letters no digest has listed yet, in chunks. Per chunk, in one
transaction, it writes a ``DeadLetterNotice`` for each and one ``dead_letter_digest_email``
follow-up per staff recipient whose payload names them. Sending is that follow-up's effect: a digest
whose email fails is retried or becomes a dead letter itself (replayable), and its entries stay in
it, never lost.

A digest's own dead letters are never listed in a digest: the mail that failed is the mail that
would carry them, so a refused address would chain digests about digests forever. They show on
/ops/ and in the admin like every dead letter, and a replay sends the digest.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from follow_ups.models import DeadLetterNotice, FollowUp
from follow_ups.registry import Kind, register
from follow_ups.services import NewFollowUp, follow_ups_create
from notifications.services import EMAIL_DELIVERY_TRAITS, email_send, staff_recipients

DIGEST_EMAIL = "dead_letter_digest_email"


def dead_letters_unlisted():
    return (
        FollowUp.objects.filter(status=FollowUp.Status.DEAD)
        .exclude(kind=DIGEST_EMAIL)
        .exclude(pk__in=DeadLetterNotice.objects.values("follow_up_id"))
    )


def dead_letter_digest_create(*, period: str, chunk_size: int | None = None) -> dict:
    """List every dead letter not listed yet in a digest for ``period``: one digest per chunk.

    With no staff recipient nothing is listed, so the first digest after one is configured has them.
    """
    chunk_size = chunk_size or settings.JOB_CHUNK_SIZE
    recipients = staff_recipients()
    listed = digests = created = 0
    while recipients:
        with transaction.atomic():
            ids = list(
                dead_letters_unlisted().order_by("pk").values_list("pk", flat=True)[:chunk_size]
            )
            if not ids:
                break
            now = timezone.now()
            DeadLetterNotice.objects.bulk_create(
                [
                    DeadLetterNotice(follow_up_id=pk, digest_period=period, created_at=now)
                    for pk in ids
                ],
                ignore_conflicts=True,  # a concurrent run listed some: they are in its digest
            )
            ours = sorted(
                DeadLetterNotice.objects.filter(
                    follow_up_id__in=ids, digest_period=period
                ).values_list("follow_up_id", flat=True)
            )
            if ours:
                created += len(
                    follow_ups_create(follow_ups=_digest_follow_ups(period, ours, recipients))
                )
                digests += 1
                listed += len(ours)
        if len(ids) < chunk_size:
            break
    return {"dead_letters": listed, "digests": digests, "follow_ups": created}


def _digest_follow_ups(period: str, ids: list[int], recipients: list[str]) -> list[NewFollowUp]:
    digest = f"dead_letter_digest:{period}:{ids[0]}"
    return [
        NewFollowUp(
            key=f"{digest}:to:{recipient}",
            kind=DIGEST_EMAIL,
            subject=digest,
            label=f"Dead-letter digest {period}"[:100],
            payload={"recipient": recipient, "period": period, "follow_up_ids": ids},
        )
        for recipient in recipients
    ]


def dead_letter_digest_email_send(follow_up: FollowUp) -> dict:
    """The effect: email one recipient the dead letters its digest lists, as they stand now."""
    payload = follow_up.payload
    entries = list(FollowUp.objects.filter(pk__in=payload["follow_up_ids"]).order_by("pk"))
    lines = [
        f"- #{entry.pk} {entry.label} {entry.kind} after {entry.attempts} attempt(s): "
        f"{entry.last_error[:200]}"
        + ("" if entry.status == FollowUp.Status.DEAD else f" (now {entry.status})")
        for entry in entries
    ]
    sent = email_send(
        purpose_key=f"dead-letter-digest-{payload['period']}-{payload['follow_up_ids'][0]}"
        f"-to-{payload['recipient']}",
        recipient=payload["recipient"],
        subject=f"{len(entries)} new dead letter(s)",
        body="Follow-ups that gave up since the last digest (replay them from the admin):\n\n"
        + "\n".join(lines),
    )
    return {"message_id": sent.message_id, "already_sent": sent.already_sent}


def register_kind() -> None:
    register(
        Kind(
            name=DIGEST_EMAIL,
            label="Dead-letter digest email",
            queue="default",
            perform=dead_letter_digest_email_send,
            **EMAIL_DELIVERY_TRAITS,
        )
    )
