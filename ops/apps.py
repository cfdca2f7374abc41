from django.apps import AppConfig


class OpsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Job log lines and the request id that travels with a task are wired by Celery signals.
        from ops import job_logs

        job_logs.connect()
