"""The JSON API: one NinjaAPI, with a router per app. OpenAPI at /api/openapi.json, docs at
/api/docs (staff only in production: ``OPS_DIAGNOSTICS_PUBLIC``)."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import JsonResponse
from ninja import NinjaAPI

from ops.middleware import DATABASE_AWAY, database_unavailable
from ops.views import staff_unless_public
from orders.api import router as orders_router
from shop.api import router as shop_router

api = NinjaAPI(
    title="Celery Shop API",
    version="1.0.0",
    urls_namespace="api",
    docs_decorator=staff_unless_public,
)
api.add_router("", shop_router)
api.add_router("", orders_router)
# ninja's own handler would turn these into a 500 before any middleware sees them.
for error in DATABASE_AWAY:
    api.add_exception_handler(error, database_unavailable)


def request_refused(request, exc: SuspiciousOperation) -> JsonResponse:
    """A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413, other refused requests a 400. Under
    DEBUG, ninja would otherwise answer any exception with a 500 and a traceback."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = f"The request body is larger than {limit} bytes."
        return JsonResponse({"detail": detail, "code": "request_too_large"}, status=413)
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


api.add_exception_handler(SuspiciousOperation, request_refused)
