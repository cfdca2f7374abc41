"""The client for the warehouse's HTTP API (the simulator in development and tests)."""

import httpx
from django.conf import settings


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
        response = httpx.post(
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


def shipments_shipped() -> list[dict]:
    """The shipments the warehouse has sent out: ``[{"reference", "shipped_at" (epoch seconds)}]``."""
    try:
        response = httpx.get(
            f"{settings.WAREHOUSE_URL}/shipments/shipped",
            timeout=settings.WAREHOUSE_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise WarehouseUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise WarehouseUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json()["shipments"]
