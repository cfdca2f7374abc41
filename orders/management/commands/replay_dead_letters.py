"""Give dead follow-ups another run: ``manage.py replay_dead_letters [--kind K] [--order NUMBER]``."""

from django.core.management.base import BaseCommand, CommandError

from orders import selectors, services
from orders.models import FollowUp


class Command(BaseCommand):
    help = "Reset dead follow-ups to pending and publish each once."

    def add_arguments(self, parser):
        parser.add_argument(
            "--kind", choices=FollowUp.Kind.values, help="only this kind of follow-up"
        )
        parser.add_argument("--order", help="only this order (its number, e.g. CS-7KQ2M9XD)")

    def handle(self, *args, kind=None, order=None, **options):
        if order is not None and not selectors.order_exists(number=order):
            raise CommandError(f"There is no order numbered {order!r}.")
        dead_ids = selectors.dead_letter_ids(kind=kind, order_number=order)
        replayed = services.follow_up_replay(follow_up_ids=dead_ids)
        self.stdout.write(f"Replayed {replayed} dead letter{'s' if replayed != 1 else ''}.")
