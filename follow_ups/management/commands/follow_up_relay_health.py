"""Exit 0 while a relay ticks (the container health check), 1 with a sentence otherwise."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from follow_ups.selectors import relay_state_get


class Command(BaseCommand):
    help = "Succeed when the active relay ticked within the last few lease periods."

    def handle(self, *args, **options):
        state = relay_state_get()
        limit = timedelta(seconds=4 * settings.FOLLOW_UP_RELAY_LEASE_SECONDS)
        if state is None or state.ticked_at is None:
            raise CommandError("No relay has ticked yet.")
        age = timezone.now() - state.ticked_at
        if age > limit:
            raise CommandError(f"The relay last ticked {age.total_seconds():.0f} s ago.")
        self.stdout.write(f"relay {state.holder} ticked {age.total_seconds():.1f} s ago")
