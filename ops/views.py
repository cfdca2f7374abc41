"""The ops page, the failure lab, ``/metrics`` and the probes. HTTP only: selectors and services do the work."""

import functools
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from devtools import selectors as lab_selectors
from devtools import services as lab_services
from follow_ups.selectors import breakers_overview
from ops import selectors, services
from ops.forms import EMAIL_LATENCY_MAX_MS, EmailFaultsForm, WarehouseFaultsForm
from ops.http_metrics import http_metrics_register
from ops.prometheus import SnapshotCollector
from orders import services as order_services


@staff_member_required
@require_GET
@never_cache
def dashboard(request):
    template = "ops/_panel.html" if request.headers.get("HX-Request") else "ops/dashboard.html"
    response = render(
        request,
        template,
        {
            "snapshot": selectors.ops_snapshot(),
            "failures": selectors.recent_failures(),
            **_breaker_settings(),
        },
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


def _breaker_settings() -> dict:
    return {
        "breaker_threshold": settings.FOLLOW_UP_BREAKER_THRESHOLD,
        "breaker_open_seconds": settings.FOLLOW_UP_BREAKER_OPEN_SECONDS,
        "breaker_release_per_second": settings.FOLLOW_UP_BREAKER_RELEASE_PER_SECOND,
    }


def _staff_or_token(request) -> bool:
    """A staff login, or a monitor with ``Authorization: Bearer <OPS_METRICS_TOKEN>``."""
    token = settings.OPS_METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    token_ok = bool(token) and secrets.compare_digest(offered.encode(), token.encode())
    return token_ok or (request.user.is_authenticated and request.user.is_staff)


def _authentication_required(realm: str) -> HttpResponse:
    response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response


def staff_unless_public(view):
    """For diagnostics (the API's docs): open while ``OPS_DIAGNOSTICS_PUBLIC``, else for staff,
    who sign in as for ``/ops/``."""
    staff_view = staff_member_required(view)

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if settings.OPS_DIAGNOSTICS_PUBLIC:
            return view(request, *args, **kwargs)
        return staff_view(request, *args, **kwargs)

    return wrapped


@never_cache
@require_GET
def metrics(request):
    """Prometheus text format; for staff, or for a scraper with ``Authorization: Bearer <token>``."""
    if not _staff_or_token(request):
        return _authentication_required("metrics")
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(selectors.ops_snapshot()))
    http_metrics_register(registry=registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
def healthz(request):
    """The process is up and answering: nothing else is asked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """The web's readiness: can it serve checkout? Only the database is asked. A broker outage
    must not take the web out of rotation: checkout saves orders and their follow-ups without it,
    and the relay publishes them when the broker is back."""
    checks = {"database": selectors.database_reachable()}
    ready = all(checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


@never_cache
@require_GET
def background_health(request):
    """Is background work flowing? The broker, the relay and beat ticking, a worker answering.

    For alerts and dashboards, not for the web's readiness (``/readyz``): when this is 503, orders
    are still taken and their follow-ups wait in the database. In production, for staff and for
    a monitor with the metrics token, as ``/metrics``.
    """
    if not settings.OPS_DIAGNOSTICS_PUBLIC and not _staff_or_token(request):
        return _authentication_required("ops")
    now = timezone.now()
    max_age = timedelta(seconds=settings.OPS_READY_BEAT_MAX_AGE_SECONDS)
    last_tick = selectors.last_relay_tick()
    beat_until = selectors.beat_lease_expires_at()
    workers = selectors.workers_online()
    checks = {
        "database": selectors.database_reachable(),
        "broker": selectors.broker_reachable(),
        "relay": last_tick is not None and now - last_tick <= max_age,
        "beat": beat_until is not None and beat_until > now,
        "workers": bool(workers),
    }
    healthy = all(checks.values())
    return JsonResponse(
        {
            "status": "healthy" if healthy else "unhealthy",
            "checks": checks,
            "last_relay_tick": last_tick.isoformat() if last_tick else None,
            "workers_online": len(workers or []),
        },
        status=200 if healthy else 503,
    )


@staff_member_required
@require_http_methods(["GET", "POST"])
def failure_lab(request):
    email = lab_selectors.email_faults_get()
    warehouse = lab_selectors.warehouse_faults_get()
    # Two forms on one page: a prefix each, so their fields (and label targets) have distinct ids.
    email_form = EmailFaultsForm(
        prefix="email", initial={"latency_ms": email.latency_ms, "error_rate": email.error_rate}
    )
    warehouse_form = WarehouseFaultsForm(
        prefix="warehouse",
        initial={
            "latency_ms": warehouse.latency_ms,
            "failure_rate": warehouse.failure_rate,
            "outage": warehouse.outage,
        },
    )
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "email":
            email_form = EmailFaultsForm(request.POST, prefix="email")
            if email_form.is_valid():
                lab_services.email_faults_set(
                    **email_form.cleaned_data, poison_recipient=email.poison_recipient
                )
                messages.success(request, "Email provider faults saved.")
                return redirect("ops:failure_lab")
        elif action == "warehouse":
            warehouse_form = WarehouseFaultsForm(request.POST, prefix="warehouse")
            if warehouse_form.is_valid():
                try:
                    lab_services.warehouse_faults_set(**warehouse_form.cleaned_data)
                except lab_services.WarehouseUnreachable as exc:
                    messages.warning(request, f"Saved, but the warehouse did not take it: {exc}")
                else:
                    messages.success(request, "Warehouse faults saved and sent to the warehouse.")
                return redirect("ops:failure_lab")
        elif action == "checkout_limit":
            forgotten = order_services.checkout_failures_clear()
            messages.success(
                request,
                f"Failed checkouts forgotten ({forgotten} counted window(s)): "
                "every connection may check out again.",
            )
            return redirect("ops:failure_lab")
        elif action == "poison":
            try:
                placed = services.poison_order_place()
            except services.NothingInStock as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request,
                    format_html(
                        'Poison order <a href="{}">{}</a> placed: its email will die.',
                        reverse("orders:order_detail", args=[placed.order.pk]),
                        placed.order.number,
                    ),
                )
            return redirect("ops:failure_lab")
        else:
            messages.error(request, "Unknown action.")
        status = 400
    return render(
        request,
        "ops/failure_lab.html",
        {
            "email_form": email_form,
            "warehouse_form": warehouse_form,
            "failure_lab_on": settings.FAILURE_LAB,
            "breakers": breakers_overview(),
            "order_delayed_after_seconds": settings.ORDER_DELAYED_AFTER_SECONDS,
            "retry_for_hours": settings.FOLLOW_UP_RETRY_FOR_HOURS,
            "email_latency_max_seconds": EMAIL_LATENCY_MAX_MS // 1000,
            "checkout_failures_per_client": settings.CHECKOUT_FAILURES_PER_CLIENT,
            "checkout_window_minutes": settings.CHECKOUT_FAILURE_WINDOW_SECONDS // 60,
            **_breaker_settings(),
        },
        status=status,
    )
