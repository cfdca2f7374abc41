"""How long the web takes to answer, as a Prometheus histogram per route, method and status.

Measured by ``RequestDurationMiddleware``, near the top of ``MIDDLEWARE``: it times every view.
gunicorn runs several worker processes: there ``config/gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` and each process writes its samples there (prometheus_client's
multiprocess mode); ``/metrics``, answered by any one of them, sums every process's.
"""

import os
import time

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Up to 10 s: a checkout charges a card and commits; past the last bucket is +Inf.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_DURATION = Histogram(
    "shop_http_request_duration_seconds",
    "Time the web took to answer a request, by route (the URL pattern), method and status",
    ["route", "method", "status"],
    buckets=BUCKETS,
    registry=None,  # added to each scrape's registry by http_metrics_register
)


class RequestDurationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # The URL pattern, not the path: an order's path carries its access token, and a path
        # per order (or per 404) would make a series per request.
        route = f"/{match.route}" if match is not None and match.route else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        REQUEST_DURATION.labels(
            route=route, method=method, status=str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response


def http_metrics_register(*, registry: CollectorRegistry) -> None:
    """Add the request histogram to a scrape's registry: every process's, under gunicorn."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_DURATION)
