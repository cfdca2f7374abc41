"""The JSON API: one NinjaAPI, with a router per app. OpenAPI at /api/openapi.json."""

from ninja import NinjaAPI

from ops.middleware import DATABASE_AWAY, database_unavailable
from orders.api import router as orders_router
from shop.api import router as shop_router

api = NinjaAPI(title="Celery Shop API", version="1.0.0", urls_namespace="api")
api.add_router("", shop_router)
api.add_router("", orders_router)
# ninja's own handler would turn these into a 500 before any middleware sees them.
for error in DATABASE_AWAY:
    api.add_exception_handler(error, database_unavailable)
