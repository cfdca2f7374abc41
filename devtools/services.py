"""The failure lab's writes: the faults an operator switches on for the email provider and the warehouse."""

import httpx
from django.conf import settings
from django.db import transaction

from devtools.email_backends import faults_cache
from devtools.models import EmailFaults, WarehouseFaults


class WarehouseUnreachable(Exception):
    """The faults were stored, but the warehouse did not take them (it is down or elsewhere)."""


def email_faults_set(
    *, latency_ms: int, error_rate: float, poison_recipient: str = ""
) -> EmailFaults:
    """Store the email provider faults the failure lab asks for (zeroes switch them off)."""
    with transaction.atomic():
        faults, _ = EmailFaults.objects.select_for_update().get_or_create(pk=1)
        faults.latency_ms = latency_ms
        faults.error_rate = error_rate
        faults.poison_recipient = poison_recipient
        faults.save()
    faults_cache.clear()  # this process sees them at once; others within the cache's seconds
    return faults


def warehouse_faults_set(*, latency_ms: int, failure_rate: float, outage: bool) -> WarehouseFaults:
    """Store the warehouse faults and push them to the warehouse's ``PUT /config``."""
    with transaction.atomic():
        faults, _ = WarehouseFaults.objects.select_for_update().get_or_create(pk=1)
        faults.latency_ms = latency_ms
        faults.failure_rate = failure_rate
        faults.outage = outage
        faults.save()
    try:
        httpx.put(
            f"{settings.WAREHOUSE_URL}/config",
            json={"latency_ms": latency_ms, "failure_rate": failure_rate, "outage": outage},
            timeout=settings.WAREHOUSE_TIMEOUT_SECONDS,
        ).raise_for_status()
    except httpx.HTTPError as exc:
        raise WarehouseUnreachable(f"{type(exc).__name__}: {exc}") from exc
    return faults
