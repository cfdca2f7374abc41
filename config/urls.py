from django.contrib import admin
from django.urls import include, path

from config.api import api

admin.site.site_header = "Celery Shop administration"
admin.site.site_title = "Celery Shop admin"
admin.site.index_title = "Orders, follow-ups and jobs"
# The list pages need the width (the follow-ups' times, order numbers and errors side by side);
# the admin's home page and breadcrumbs lead everywhere the sidebar did.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("ops.urls")),  # /ops/, /ops/lab/, /metrics, /healthz, /readyz
    path("", include("notifications.urls")),
    path("", include("orders.urls")),
    path("", include("shop.urls")),
]
