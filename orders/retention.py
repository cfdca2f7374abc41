"""The ``retention`` job: everything that grows with orders or with time, pruned once a day, a chunk
per transaction, each app pruning its own tables (docs/scheduling.md, "Retention").

Orders, their lines and shipments are business records and are kept; so are invoices, the legal
record of a sale, unless ``INVOICE_PDF_RETENTION_DAYS`` says to drop their stored PDF (re-drawn
from the order on demand). What goes, and after how long, is set per table in settings.
"""

import time
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from follow_ups.retention import follow_ups_oldest_created_at, follow_ups_prune
from notifications.retention import email_deliveries_prune, outbox_messages_prune
from orders.models import AbandonedCart, CheckoutRequest, Invoice, PaymentAttempt
from scheduling.retention import (
    job_runs_prune,
    retention_cutoff,
    rows_delete_in_chunks,
    task_results_prune,
)


def retention_prune() -> dict:
    """Prune every table with a retention; returns how many rows each lost.

    The ledger goes first, and the delivery log after it is told when the oldest follow-up still
    on record was created: an email's proof of sending outlives every follow-up that could send it
    again. Stops starting chunks after ``RETENTION_RUN_MAX_SECONDS`` (``"unfinished": true``); the
    next run carries on.
    """
    now = timezone.now()
    deadline = time.monotonic() + settings.RETENTION_RUN_MAX_SECONDS
    counts = follow_ups_prune(now=now, deadline=deadline)
    follow_ups_since = follow_ups_oldest_created_at()
    counts["email_deliveries"] = email_deliveries_prune(
        now=now, senders_since=follow_ups_since, deadline=deadline
    )
    counts["payment_attempts"] = payment_attempts_prune(
        now=now, follow_ups_since=follow_ups_since, deadline=deadline
    )
    counts["checkout_requests"] = checkout_requests_prune(now=now, deadline=deadline)
    counts["invoice_pdfs"] = invoice_pdfs_prune(now=now, deadline=deadline)
    counts["abandoned_carts"] = abandoned_carts_prune(now=now, deadline=deadline)
    counts["job_runs"] = job_runs_prune(now=now, deadline=deadline)
    counts["task_results"] = task_results_prune(now=now, deadline=deadline)
    counts["outbox_messages"] = outbox_messages_prune(now=now, deadline=deadline)
    counts["unfinished"] = time.monotonic() >= deadline
    return counts


def payment_attempts_prune(
    *, now: datetime, follow_ups_since: datetime | None, deadline: float | None = None
) -> int:
    """Attempts that charged nothing in the end (declined, or voided), after
    ``PAYMENT_ATTEMPT_RETENTION_DAYS``: what answers "why was my card charged, then not" in a
    dispute. An attempt with an order is the order's payment record and stays with it; one still
    charged waits for its void. Never before its ``payment_void`` follow-ups are gone (they are
    created with it, so it must be older than the oldest follow-up): a replayed void finds it."""
    cutoff = retention_cutoff(
        now=now, days=settings.PAYMENT_ATTEMPT_RETENTION_DAYS, owners_since=follow_ups_since
    )
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=PaymentAttempt.objects.filter(
            status__in=[PaymentAttempt.Status.DECLINED, PaymentAttempt.Status.VOIDED],
            order__isnull=True,
            created_at__lt=cutoff,
            updated_at__lt=cutoff,
        ),
        deadline=deadline,
    )


def checkout_requests_prune(*, now: datetime, deadline: float | None = None) -> int:
    """Idempotency keys older than ``CHECKOUT_REQUEST_RETENTION_DAYS``: a client retries within
    minutes; after this, the same key places a new order (Stripe keeps keys 24 hours)."""
    cutoff = retention_cutoff(now=now, days=settings.CHECKOUT_REQUEST_RETENTION_DAYS)
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=CheckoutRequest.objects.filter(created_at__lt=cutoff), deadline=deadline
    )


def abandoned_carts_prune(*, now: datetime, deadline: float | None = None) -> int:
    """Carts untouched for ``RETENTION_DAYS``: long reminded, or never to be."""
    cutoff = retention_cutoff(now=now, days=settings.RETENTION_DAYS)
    if cutoff is None:
        return 0
    return rows_delete_in_chunks(
        rows=AbandonedCart.objects.filter(touched_at__lt=cutoff), deadline=deadline
    )


def invoice_pdfs_prune(
    *, now: datetime, chunk_size: int | None = None, deadline: float | None = None
) -> int:
    """With ``INVOICE_PDF_RETENTION_DAYS`` set (default 0: kept), drop the stored PDF of invoices
    older than that, a chunk per transaction; the row, and so the order's one invoice, stays, and
    the PDF is drawn again from the order when asked for (``selectors.invoice_pdf_get``)."""
    cutoff = retention_cutoff(now=now, days=settings.INVOICE_PDF_RETENTION_DAYS)
    if cutoff is None:
        return 0
    chunk_size = chunk_size or settings.RETENTION_CHUNK_SIZE
    stored = Invoice.objects.filter(created_at__lt=cutoff).exclude(pdf=b"")
    dropped = 0
    while deadline is None or time.monotonic() < deadline:
        with transaction.atomic():
            ids = list(
                stored.select_for_update(skip_locked=True)
                .order_by("pk")
                .values_list("pk", flat=True)[:chunk_size]
            )
            if not ids:
                break
            dropped += Invoice.objects.filter(pk__in=ids).update(pdf=b"")
        if len(ids) < chunk_size:
            break
    return dropped
