"""The ops snapshot as Prometheus gauges: the same figures as the ops page, one registry a scrape."""

from prometheus_client import CollectorRegistry, Gauge

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


def registry_for(snapshot: OpsSnapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    depth = Gauge(
        "shop_queue_depth",
        "Messages ready in the broker queue",
        ["queue"],
        registry=registry,
    )
    for queue in snapshot.by_queue:
        if queue.depth is not None:
            depth.labels(queue=queue.name).set(queue.depth)
    for attribute, (name, documentation) in PER_KIND.items():
        by_kind = Gauge(name, documentation, ["kind", "queue"], registry=registry)
        for metric in snapshot.by_kind:
            by_kind.labels(kind=metric.name, queue=metric.queue).set(getattr(metric, attribute))
    workers = Gauge("shop_workers_online", "Workers that answered a ping", registry=registry)
    if snapshot.workers is not None:
        workers.set(len(snapshot.workers))
    tick = Gauge(
        "shop_relay_last_tick_timestamp_seconds",
        "When the active relay last ticked (Unix time)",
        registry=registry,
    )
    if snapshot.last_relay_tick is not None:
        tick.set(snapshot.last_relay_tick.timestamp())
    for field, documentation in RELAY_COUNTERS.items():
        counter = Gauge(f"shop_relay_{field}_total", documentation, registry=registry)
        if snapshot.relay is not None:
            counter.set(getattr(snapshot.relay, field))
    lag = Gauge(
        "shop_relay_lag_seconds",
        "Age of the oldest follow-up owed to the broker",
        registry=registry,
    )
    if snapshot.relay is not None:
        lag.set(snapshot.relay.lag_seconds)
    breaker_state = Gauge(
        "shop_breaker_state",
        "A provider's circuit breaker: 1 for its current state (closed, open, half_open)",
        ["provider", "state"],
        registry=registry,
    )
    breaker_waiting = Gauge(
        "shop_breaker_waiting_follow_ups",
        "Follow-ups waiting for a provider's breaker to close",
        ["provider"],
        registry=registry,
    )
    for breaker in snapshot.breakers:
        for state in ("closed", "open", "half_open"):
            breaker_state.labels(provider=breaker["provider"], state=state).set(
                int(breaker["state"] == state)
            )
        breaker_waiting.labels(provider=breaker["provider"]).set(breaker["waiting"])
    unknown = Gauge(
        "shop_email_deliveries_unknown",
        "Emails whose DATA got no reply: the server may have them; each is held before a resend",
        registry=registry,
    )
    if snapshot.email_unknown is not None:
        unknown.set(snapshot.email_unknown.count)
    return registry
