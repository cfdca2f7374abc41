"""The bare provider calls each follow-up kind makes, without the job system: the baseline of
measure 7 (``bench.measures.measure_follow_ups_per_kind``).

Each kind's call is what its follow-up does at the provider, with the same connection policy:

- ``confirmation_email``: the same message (subject, body, Message-ID) handed to the SMTP server
  through Django's SMTP backend, one connection per process checked with RSET before MAIL, as
  ``notifications.services.email_send`` does;
- ``warehouse_sync``: the same ``POST /shipments`` through ``orders.warehouse.shipment_request``
  (one kept ``httpx`` client per process);
- ``invoice``: the same PDF rendered by ``orders.invoices.invoice_pdf``.

What it leaves out is what the job system and the follow-up add: the message, the claim, the
order's read from the database, the delivery/invoice rows, the finish. ``calls_per_second`` runs
the calls in ``concurrency`` spawned processes (as many as the worker's pool children), each
prepared before a common start, and times from that start to the last call's end.
"""

import multiprocessing
import os
import time
from pathlib import Path

KINDS = ("confirmation_email", "warehouse_sync", "invoice")


def _prepare(kind: str, order_ids: list[str]):
    """Everything read from the database before the clock starts: the bare call reads nothing."""
    from orders.models import Order
    from orders.services import confirmation_email_body, shipment_payload

    orders = list(Order.objects.filter(pk__in=order_ids).prefetch_related("lines"))
    if kind == "confirmation_email":
        return [
            (f"order-{o.pk}-confirmation", o.email, f"Order {o.number} confirmed", confirmation_email_body(o))
            for o in orders
        ]  # fmt: skip
    if kind == "warehouse_sync":
        return [(f"order-{o.pk}-shipment", shipment_payload(o)) for o in orders]
    return orders


def _call(kind: str, item, backend) -> None:
    if kind == "confirmation_email":
        from django.core.mail import EmailMessage

        from notifications.backends import message_hand_over

        key, recipient, subject, body = item
        message = EmailMessage(
            subject=subject, body=body, to=[recipient], headers={"Message-ID": f"<{key}@bench>"}
        )
        message_hand_over(backend, message, before_data=lambda: None)
    elif kind == "warehouse_sync":
        from orders.warehouse import shipment_request

        key, payload = item
        shipment_request(idempotency_key=f"bare-{key}", payload=payload)
    else:
        from orders.invoices import invoice_pdf

        invoice_pdf(item)


def _child(kind: str, order_ids: list[str], start, done) -> None:
    import django

    django.setup()
    from django.core.mail import get_connection
    from django.db import connections

    items = _prepare(kind, order_ids)
    connections.close_all()
    backend = get_connection() if kind == "confirmation_email" else None
    start.wait()
    cpu = sum(os.times()[:2])
    for item in items:
        _call(kind, item, backend)
    done.put((time.time(), sum(os.times()[:2]) - cpu))
    if backend is not None:
        backend.close()


def calls_per_second(kind: str, order_ids: list[str], concurrency: int) -> dict:
    """``kind``'s bare call for every order, shared among ``concurrency`` processes."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    shares = [order_ids[n::concurrency] for n in range(concurrency)]
    children = [context.Process(target=_child, args=(kind, share, start, done)) for share in shares]
    for child in children:
        child.start()
    # Each child prepares (Django, its rows) before the start; once all are idle, release them.
    _wait_prepared(children)
    began = time.time()
    start.set()
    reports = [done.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=60)
        if child.exitcode != 0:
            raise RuntimeError(f"a bare {kind} process exited with {child.exitcode}")
    seconds = max(end for end, _ in reports) - began
    cpu = sum(used for _, used in reports)
    return {
        "calls": len(order_ids),
        "seconds": round(seconds, 3),
        "per_second": round(len(order_ids) / seconds, 1),
        "cpu_ms_per_call": round(cpu * 1000 / len(order_ids), 2),
    }


def _wait_prepared(children) -> None:
    """Until every child is blocked on the start event (idle: its CPU stops moving)."""
    previous = None
    while True:
        time.sleep(0.5)
        now = tuple(_cpu_ticks(child.pid) for child in children)
        if now == previous:
            return
        previous = now


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return -1
    return int(fields[11]) + int(fields[12])
