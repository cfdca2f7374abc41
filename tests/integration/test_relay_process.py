"""The relay as a process: one active at a time, a standby that takes over, a wake-up from the web.

Real ``manage.py follow_up_relay`` processes on the suite's database and broker, with production
timings (lease 15 s, grace 10 s). Which relay is active is read from what it stamps on every tick
(``RelayState.holder``, "<host>:<pid>:<random>").
"""

import os
import signal
import time

import pytest
from django.conf import settings

from follow_ups.models import FollowUp, RelayState
from follow_ups.services import publish_breaker
from orders.services import order_subject
from tests.factories import ProductFactory, place_order
from tests.processes import BIN, Process, start_relay, wait_until

pytestmark = pytest.mark.integration


def active_pid() -> int | None:
    state = RelayState.objects.filter(pk=1).first()
    return int(state.holder.split(":")[1]) if state and state.holder else None


def start_standby(env, log_dir) -> Process:
    standby = Process(
        "standby-relay", [str(BIN / "python"), "manage.py", "follow_up_relay"], env, log_dir
    )
    standby.wait_for_log("stands by", timeout=30)
    return standby


@pytest.fixture
def two_relays(transactional_db, worker_env, process_log_dir):
    active = start_relay(worker_env, process_log_dir, name="active-relay")
    try:
        standby = start_standby(worker_env, process_log_dir)
    except AssertionError:
        active.stop()
        raise
    yield active, standby
    active.stop()
    standby.stop()


def test_only_one_relay_ticks_and_a_standby_takes_over_within_the_lease(two_relays):
    active, standby = two_relays
    wait_until(lambda: active_pid() == active.popen.pid, timeout=10, message="the first to tick")
    time.sleep(3)
    assert active_pid() == active.popen.pid  # the standby never ticked

    os.killpg(active.popen.pid, signal.SIGKILL)  # no clean release: the lease must lapse
    killed = time.monotonic()
    wait_until(
        lambda: active_pid() == standby.popen.pid,
        timeout=settings.FOLLOW_UP_RELAY_LEASE_SECONDS + 10,
        interval=0.2,
        message="the standby to take over",
    )
    took_over_in = time.monotonic() - killed
    print(f"standby took over {took_over_in:.1f} s after the active relay was killed")
    assert (
        took_over_in
        <= settings.FOLLOW_UP_RELAY_LEASE_SECONDS + settings.FOLLOW_UP_RELAY_LEASE_SECONDS / 3 + 2
    )


def test_a_relay_stopped_cleanly_hands_over_at_once(two_relays):
    active, standby = two_relays
    wait_until(lambda: active_pid() == active.popen.pid, timeout=10, message="the first to tick")

    active.stop()  # SIGTERM: the relay releases its lease on the way out
    stopped = time.monotonic()
    wait_until(
        lambda: active_pid() == standby.popen.pid,
        timeout=15,
        interval=0.2,
        message="the standby to take over",
    )
    # The standby asks every third of the lease (5 s); no wait for the lease to lapse.
    assert time.monotonic() - stopped <= settings.FOLLOW_UP_RELAY_LEASE_SECONDS / 3 + 2


@pytest.mark.postgres
def test_rows_the_web_could_not_publish_are_published_at_once_when_it_wakes_the_relay(
    transactional_db, worker_env, process_log_dir
):
    relay = start_relay(worker_env, process_log_dir)
    try:
        publish_breaker.trip()  # as after a failed publish: this process leaves it to the relay
        order = place_order((ProductFactory(), 1)).order
        committed = time.monotonic()
        rows = FollowUp.objects.filter(subject=order_subject(order.pk))

        wait_until(
            lambda: not rows.filter(published_at=None).exists(),
            timeout=settings.FOLLOW_UP_RELAY_GRACE_SECONDS,
            interval=0.1,
            message="the relay to publish what the web left",
        )
        # Woken by NOTIFY, not found by its grace-period sweep (10 s).
        assert time.monotonic() - committed < 3
    finally:
        publish_breaker.closed_again_at = 0.0
        relay.stop()


@pytest.mark.postgres
def test_with_publishing_left_to_the_relay_the_commit_wakes_it_and_the_order_becomes_ready(
    live_worker, worker_env, process_log_dir, published_tasks
):
    """FOLLOW_UP_PUBLISH=relay: the web publishes nothing; its commit's NOTIFY wakes the relay."""
    settings.FOLLOW_UP_PUBLISH = "relay"
    relay = start_relay(worker_env, process_log_dir)
    try:
        order = place_order((ProductFactory(), 1)).order
        committed = time.monotonic()
        assert published_tasks == []  # nothing from this (the web's) process
        rows = FollowUp.objects.filter(subject=order_subject(order.pk))
        wait_until(
            lambda: rows.filter(status="succeeded").count() == 3,
            timeout=settings.FOLLOW_UP_RELAY_GRACE_SECONDS,
            interval=0.05,
            message="the order's follow-ups to run",
        )
        # Woken by NOTIFY, not found by its grace-period sweep (10 s).
        assert time.monotonic() - committed < 3
    finally:
        settings.FOLLOW_UP_PUBLISH = "commit"
        relay.stop()
