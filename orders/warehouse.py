"""The client for the warehouse's HTTP API (the simulator in development and tests)."""

import os
from dataclasses import dataclass

import httpx
from django.conf import settings

_client: httpx.Client | None = None
_client_pid: int | None = None


def _http() -> httpx.Client:
    """One client per process, reused: building one loads the CA bundle (10-40 ms of CPU, measured
    in bench/), and a reused client keeps its connection to the warehouse alive. Made anew after a
    fork, so prefork worker children never share a socket."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client, _client_pid = httpx.Client(), os.getpid()
    return _client


class WarehouseUnavailable(Exception):
    """Timeout, connection error, 5xx or 429: the same request may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class WarehouseRejected(Exception):
    """A 4xx answer: the request itself is wrong, and sending it again will not help."""


def shipment_request(*, idempotency_key: str, payload: dict) -> str:
    """Ask the warehouse to ship; return its shipment reference. A repeated key returns the same one."""
    try:
        response = _http().post(
            f"{settings.WAREHOUSE_URL}/shipments",
            json=payload,
            headers={"Idempotency-Key": idempotency_key},
            timeout=settings.WAREHOUSE_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise WarehouseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    if response.status_code == 429 or response.status_code >= 500:
        raise WarehouseUnavailable(
            f"HTTP {response.status_code}: {response.text[:200]}",
            retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
        )
    if response.status_code >= 400:
        raise WarehouseRejected(f"HTTP {response.status_code}: {response.text[:500]}")
    return response.json()["reference"]


def _retry_after_seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None  # an HTTP date: rare enough that our own backoff is a fine answer


@dataclass(frozen=True)
class ShippedPage:
    shipments: list[dict]  # [{"sequence", "reference", "order_number", "shipped_at" (epoch s)}]
    next_after: str  # the cursor to ask with next time (opaque: store it as it is)


def shipments_shipped(*, after: str = "", limit: int) -> ShippedPage:
    """What the warehouse shipped after the cursor ``after`` ("": from the start), in shipping
    order, at most ``limit`` entries."""
    params = {"limit": limit}
    if after:
        params["after"] = after
    try:
        response = _http().get(
            f"{settings.WAREHOUSE_URL}/shipments/shipped",
            params=params,
            timeout=settings.WAREHOUSE_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise WarehouseUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise WarehouseUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
    body = response.json()
    return ShippedPage(shipments=body["shipments"], next_after=str(body["next"]))
