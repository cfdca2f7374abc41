"""Run the relay: ``manage.py follow_up_relay`` (the ``relay`` line of the Procfiles)."""

import signal
import threading

from django.core.management.base import BaseCommand

from follow_ups.relay import relay_run


class Command(BaseCommand):
    help = "Publish follow-ups that were never handed over, fell due, or were lost by the broker."

    def handle(self, *args, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        relay_run(stop=stop)
