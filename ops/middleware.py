"""Request middleware: a request id for every request, a 503 when the database is away, and the
shop's own error pages on customer routes in development too.

``RequestIdMiddleware`` gives every web request an id, bound to the log context and echoed in
``X-Request-ID``. Tasks published while the request runs carry the id in their headers (see
``ops.job_logs``).

``DatabaseUnavailableMiddleware`` answers 503 with ``Retry-After`` when a view finds the database
unreachable (restarting, failing over, refusing connections): the request can be tried again in a
moment, which a 500 does not say. The JSON API raises inside django-ninja, whose own handler would
answer 500 first, so ``config.api`` registers ``database_unavailable`` there too.
"""

import logging
import re
import uuid

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import is_valid_path
from django.views.defaults import page_not_found, server_error

logger = logging.getLogger(__name__)

# A caller's id (from a proxy or load balancer) is kept only if it is short and plain.
ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# What Django raises when the database cannot be reached or the connection broke mid-request.
DATABASE_AWAY = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5
API_PREFIX = "/api/"


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        offered = request.headers.get("X-Request-ID", "")
        request_id = offered if ACCEPTABLE_REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        response["X-Request-ID"] = request_id
        return response


def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """503 + Retry-After: JSON for the API, a short page otherwise (no context processors: they
    would read the session from the database that is away)."""
    logger.warning(
        "database unavailable, answering 503 to %s %s: %s", request.method, request.path, exc
    )
    if request.path.startswith(API_PREFIX):
        response = JsonResponse(
            {
                "detail": "The shop cannot reach its database right now. Try again in a few "
                "seconds; send the same Idempotency-Key to be sure an order is placed once.",
                "code": "database_unavailable",
            },
            status=503,
        )
    else:
        response = HttpResponse(render_to_string("ops/database_unavailable.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_AWAY):
            return database_unavailable(request, exception)
        return None


# Routes for staff and machines: in development they keep Django's debug pages (the URL list, the
# traceback), which are written for the person who runs the shop.
STAFF_PREFIXES = (
    "/admin/",
    "/api/",
    "/ops/",
    "/dev/",
    "/metrics",
    "/healthz",
    "/readyz",
    "/static/",
)


class CustomerErrorPagesMiddleware:
    """In development too (``DEBUG``), a customer's route answers a missing page or a bug with the
    shop's own 404 and 500 pages, not Django's debug pages, which list every URL pattern. In
    production Django renders them already; the traceback still reaches the log either way."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.DEBUG and _customer_route(request) and not _resolves(request.path_info):
            return page_not_found(request, Http404(request.path_info))
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not settings.DEBUG or not _customer_route(request):
            return None
        if isinstance(exception, Http404):
            return page_not_found(request, exception)
        # The database away is a 503 (DatabaseUnavailableMiddleware); a refusal keeps its 400/403.
        if isinstance(exception, (*DATABASE_AWAY, PermissionDenied, SuspiciousOperation)):
            return None
        logging.getLogger("django.request").error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"status_code": 500, "request": request},
        )
        response = server_error(request)
        response._has_been_logged = True  # with its traceback, above: Django logs it only once
        return response


def _customer_route(request: HttpRequest) -> bool:
    return not request.path_info.startswith(STAFF_PREFIXES)


def _resolves(path: str) -> bool:
    """The path, or (APPEND_SLASH) the path with a slash CommonMiddleware redirects to, has a view."""
    return is_valid_path(path) or (
        settings.APPEND_SLASH and not path.endswith("/") and is_valid_path(f"{path}/")
    )
