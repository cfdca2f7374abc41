"""The JSON API: one NinjaAPI, with a router per app. OpenAPI at /api/openapi.json."""

from ninja import NinjaAPI

from orders.api import router as orders_router
from shop.api import router as shop_router

api = NinjaAPI(title="Celery Shop API", version="1.0.0", urls_namespace="api")
api.add_router("", shop_router)
api.add_router("", orders_router)
