"""Time from one clock: a worker whose own clock is 15 minutes off, either way, judges leases,
holds and due times by the database's clock, so it neither loses its slow work to a takeover nor
sends an email twice through a hold.

The worker's clock is moved with time-machine in a ``sitecustomize`` the test puts on its
``PYTHONPATH`` (no production code knows of it); the relay, the web and PostgreSQL keep the true
time. Leases (15 s), holds (15 min) and the relay's checks keep their production defaults.
"""

import re
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models.functions import Now

from follow_ups.models import FollowUp
from notifications.models import EmailDelivery
from orders.services import CONFIRMATION_EMAIL, WAREHOUSE_SYNC, order_subject
from tests.factories import ProductFactory
from tests.processes import wait_until

# Their broker is a private Redis and they mostly wait: CI runs them once, beside the several-hosts
# suite (.ci/run).
pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.once, pytest.mark.waits]

SKEW_SITECUSTOMIZE = textwrap.dedent(
    """
    import datetime, os
    offset = os.environ.get("TEST_CLOCK_OFFSET_SECONDS")
    if offset:
        import time_machine
        now = datetime.datetime.now(datetime.UTC)
        time_machine.travel(now + datetime.timedelta(seconds=float(offset)), tick=True).start()
    """
)


@pytest.fixture
def skewed_stack(private_stack, tmp_path):
    """The private stack with its worker's clock ``offset`` seconds off; relay and web true."""
    (tmp_path / "sitecustomize.py").write_text(SKEW_SITECUSTOMIZE)

    def make(offset: float, **env):
        stack = private_stack(worker=False, extra_env=env)
        return worker_with_clock(stack, offset, tmp_path)

    make.path = tmp_path
    return make


def worker_with_clock(stack, offset: float, path):
    """Replace the stack's worker with one whose clock is ``offset`` seconds off."""
    if stack.worker is not None:
        stack.worker.stop()
    stack.env = stack.env | {"PYTHONPATH": str(path), "TEST_CLOCK_OFFSET_SECONDS": str(offset)}
    stack.worker = stack.start_worker()
    return stack


def follow_up(order_id: str, kind: str) -> FollowUp:
    return FollowUp.objects.get(subject=order_subject(order_id), kind=kind)


@pytest.mark.parametrize("offset", [-900, 900])
def test_the_workers_clock_really_is_off(skewed_stack, offset):
    # The control: Celery stamps its log lines with the worker's own clock.
    stack = skewed_stack(offset)
    stamp = re.search(r"\[([\d-]+ [\d:]+),\d+: INFO/MainProcess\] .* ready\.", stack.worker.log())
    logged = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert (logged - datetime.now(UTC)).total_seconds() == pytest.approx(offset, abs=60)


@pytest.mark.parametrize("offset", [-900, 900])
def test_a_worker_whose_clock_is_off_keeps_its_slow_work(skewed_stack, warehouse, offset):
    # The warehouse call outlasts the lease (15 s): only renewals keep it. A lease written on a
    # clock 15 minutes slow would look lapsed to the relay at once and the work be taken over.
    stack = skewed_stack(offset, WAREHOUSE_TIMEOUT_SECONDS="30")  # the client waits for it
    warehouse.configure(latency_ms=20_000)
    calls_before = warehouse.shipment_requests()

    order_id = stack.checkout(ProductFactory().sku).json()["id"]
    wait_until(
        lambda: follow_up(order_id, WAREHOUSE_SYNC).status == "succeeded",
        timeout=90,
        message="the slow warehouse sync to finish",
    )

    sync = follow_up(order_id, WAREHOUSE_SYNC)
    assert (sync.attempts, sync.crashes) == (1, 0)
    assert warehouse.shipment_requests() - calls_before == 1  # never taken over, called once


@pytest.mark.parametrize(
    ("writer", "reader"),
    [(0, 900), (-900, 0)],
    ids=["a reader 15 min ahead", "a writer 15 min behind"],
)
def test_an_emails_hold_is_kept_whatever_the_clocks_of_the_workers(
    skewed_stack, smtp_server, writer, reader
):
    # The server keeps the message but answers past the client's timeout (10 s): the delivery is
    # unknown and held for 15 minutes. One worker writes the hold, another with a clock 15
    # minutes apart tries the email inside it: neither clock may end the hold early.
    stack = skewed_stack(writer)
    smtp_server.delay_next_reply(12)
    order_id = stack.checkout(ProductFactory().sku).json()["id"]
    wait_until(
        lambda: (
            follow_up(order_id, CONFIRMATION_EMAIL).status == "retrying"
            and EmailDelivery.objects.filter(status="unknown").exists()
        ),
        timeout=60,
        message="the delivery to be held as unknown and its follow-up to wait for a retry",
    )
    worker_with_clock(stack, reader, skewed_stack.path)

    # Bring the retry forward, as an impatient operator might: the worker runs it in the hold.
    tried = follow_up(order_id, CONFIRMATION_EMAIL).attempts
    FollowUp.objects.filter(subject=order_subject(order_id), kind=CONFIRMATION_EMAIL).update(
        next_attempt_at=Now() - timedelta(seconds=1)
    )
    wait_until(
        lambda: (
            follow_up(order_id, CONFIRMATION_EMAIL).attempts > tried
            and follow_up(order_id, CONFIRMATION_EMAIL).status == "retrying"
        ),
        timeout=60,
        message="the worker to try it inside the hold",
    )

    assert len(smtp_server.message_ids()) == 1  # the first, late-acknowledged copy only
    assert EmailDelivery.objects.get().status == "unknown"
    assert follow_up(order_id, CONFIRMATION_EMAIL).status == "retrying"
