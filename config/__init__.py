"""Project wiring: settings, the Celery app, URLs, WSGI/ASGI."""

from config.celery import app as celery_app

__all__ = ("celery_app",)
