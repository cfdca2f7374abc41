from django.urls import path

from ops import views

app_name = "ops"
urlpatterns = [
    path("ops/", views.dashboard, name="dashboard"),
    path("ops/lab/", views.failure_lab, name="failure_lab"),
    path("metrics", views.metrics, name="metrics"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("healthz/background", views.background_health, name="background_health"),
]
