"""The shop's URLs plus one view with a bug in it: for the 500 page's test."""

from django.urls import path

from config.urls import urlpatterns as shop_urlpatterns


def view_with_a_bug(request):
    raise RuntimeError("KeyError in orders.services line 12: internal detail")


urlpatterns = [path("a-page-with-a-bug/", view_with_a_bug), *shop_urlpatterns]
