from django.contrib import admin
from django.urls import include, path

from config.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("ops.urls")),  # /ops/, /ops/lab/, /metrics, /healthz, /readyz
    path("", include("notifications.urls")),
    path("", include("orders.urls")),
    path("", include("shop.urls")),
]
