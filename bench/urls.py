"""The shop's URLs plus the two baseline checkouts, for the benchmark's gunicorn only."""

from django.urls import path

from bench.api import api
from config.urls import urlpatterns as shop_urlpatterns

urlpatterns = [path("bench/", api.urls), *shop_urlpatterns]
