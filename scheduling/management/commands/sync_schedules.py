"""``manage.py sync_schedules``: write the project's schedules (``settings.SCHEDULES``, declared in
config/schedules.py) to the beat tables (idempotent)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from scheduling.services import schedules_sync


class Command(BaseCommand):
    help = "Write the schedules defined in config/schedules.py to django-celery-beat's tables."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Overwrite schedules that were edited in the admin too.",
        )

    def handle(self, *args, force: bool = False, **options):
        report = schedules_sync(schedules=settings.SCHEDULES, force=force)
        for label, names in [
            ("created", report.created),
            ("updated", report.updated),
            ("unchanged", report.unchanged),
            ("removed", report.removed),
        ]:
            if names:
                self.stdout.write(f"{label}: {', '.join(names)}")
        for name in report.kept_admin_edits:
            self.stdout.write(
                self.style.WARNING(
                    f"kept admin edits: {name} differs from config/schedules.py "
                    "(run with --force to overwrite)"
                )
            )
