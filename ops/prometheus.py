"""The ops snapshot in Prometheus' terms: the same figures as the ops page, collected at each scrape.

Gauges for what the ledger and the broker hold now; Counters for what the relay has done since it
was first started (kept in its state row, so they only go up, and a relay restart does not reset
them). The web's request latency (``ops.http_metrics``) is added by the view.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ops.selectors import OpsSnapshot

PER_KIND = {
    "waiting": ("shop_follow_ups_waiting", "Follow-ups waiting to run, by the ledger"),
    "oldest_wait_seconds": (
        "shop_follow_up_oldest_wait_seconds",
        "Age of the oldest waiting follow-up",
    ),
    "throughput_per_minute": (
        "shop_follow_up_throughput_per_minute",
        "Follow-ups that succeeded in the last minute",
    ),
    "retry_rate": (
        "shop_follow_up_retry_rate",
        "Share of follow-ups attempted in the last 5 minutes that needed a retry",
    ),
    "failure_rate": (
        "shop_follow_up_failure_rate",
        "Share of follow-ups attempted in the last 5 minutes that ended dead",
    ),
    "dead_letters": ("shop_follow_up_dead_letters", "Follow-ups parked as dead letters"),
}

RELAY_COUNTERS = {
    "published": "Follow-ups the relay published: never handed over, or a retry fell due",
    "recovered": "Follow-ups whose execution's lease lapsed, returned to pending",
    "republished": "Follow-ups re-published because the broker no longer held their message",
    "failed": "Relay publishes the broker refused",
}

BREAKER_STATES = ("closed", "open", "half_open")


class SnapshotCollector(Collector):
    """One ``OpsSnapshot`` as metric families; a family with nothing known has no sample."""

    def __init__(self, snapshot: OpsSnapshot):
        self.snapshot = snapshot

    def collect(self):
        snapshot = self.snapshot
        depth = GaugeMetricFamily(
            "shop_queue_depth", "Messages ready in the broker queue", labels=["queue"]
        )
        for queue in snapshot.by_queue:
            if queue.depth is not None:
                depth.add_metric([queue.name], queue.depth)
        yield depth

        for attribute, (name, documentation) in PER_KIND.items():
            by_kind = GaugeMetricFamily(name, documentation, labels=["kind", "queue"])
            for metric in snapshot.by_kind:
                by_kind.add_metric([metric.name, metric.queue], getattr(metric, attribute))
            yield by_kind

        workers = GaugeMetricFamily("shop_workers_online", "Workers that answered within 0.5 s")
        if snapshot.workers is not None:
            workers.add_metric([], len(snapshot.workers))
        yield workers
        queue_workers = GaugeMetricFamily(
            "shop_queue_workers", "Workers that answered and consume the queue", labels=["queue"]
        )
        for queue, names in (snapshot.queue_workers or {}).items():
            queue_workers.add_metric([queue], len(names))
        yield queue_workers

        tick = GaugeMetricFamily(
            "shop_relay_last_tick_timestamp_seconds",
            "When the active relay last ticked (Unix time)",
        )
        if snapshot.last_relay_tick is not None:
            tick.add_metric([], snapshot.last_relay_tick.timestamp())
        yield tick
        for field, documentation in RELAY_COUNTERS.items():
            # Exposed as shop_relay_<field>_total.
            counter = CounterMetricFamily(f"shop_relay_{field}", documentation)
            if snapshot.relay is not None:
                counter.add_metric([], getattr(snapshot.relay, field))
            yield counter
        lag = GaugeMetricFamily(
            "shop_relay_lag_seconds", "Age of the oldest follow-up owed to the broker"
        )
        if snapshot.relay is not None:
            lag.add_metric([], snapshot.relay.lag_seconds)
        yield lag

        beat = GaugeMetricFamily(
            "shop_beat_lease_expires_timestamp_seconds",
            "Until when the active beat holds its lease (Unix time); it renews it while it runs",
        )
        if snapshot.beat_until is not None:
            beat.add_metric([], snapshot.beat_until.timestamp())
        yield beat

        breaker_state = GaugeMetricFamily(
            "shop_breaker_state",
            "A provider's circuit breaker: 1 for its current state (closed, open, half_open)",
            labels=["provider", "state"],
        )
        breaker_waiting = GaugeMetricFamily(
            "shop_breaker_waiting_follow_ups",
            "Follow-ups waiting for a provider's breaker to close",
            labels=["provider"],
        )
        for breaker in snapshot.breakers:
            for state in BREAKER_STATES:
                breaker_state.add_metric(
                    [breaker["provider"], state], int(breaker["state"] == state)
                )
            breaker_waiting.add_metric([breaker["provider"]], breaker["waiting"])
        yield breaker_state
        yield breaker_waiting

        unknown = GaugeMetricFamily(
            "shop_email_deliveries_unknown",
            "Emails whose DATA got no reply: the server may have them; each is held before a resend",
        )
        if snapshot.email_unknown is not None:
            unknown.add_metric([], snapshot.email_unknown.count)
        yield unknown
