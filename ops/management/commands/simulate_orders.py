"""``manage.py simulate_orders --count N --rate R``: shoppers checking out, over the real checkout path."""

from django.core.management.base import BaseCommand, CommandError

from ops import services


class Command(BaseCommand):
    help = "Place N orders, R a second, through orders.services.order_place (card charged, follow-ups published)."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10, help="how many orders (default 10)")
        parser.add_argument("--rate", type=float, default=1.0, help="orders a second (default 1)")

    def handle(self, *args, count: int, rate: float, **options):
        if count < 1 or count > 100_000:
            raise CommandError("--count must be between 1 and 100000")
        if rate <= 0 or rate > 1000:
            raise CommandError("--rate must be above 0 and at most 1000 orders a second")

        def report(placed):
            self.stdout.write(f"placed {placed.order.number} ({placed.order.pk})")

        try:
            placed = services.orders_simulate(count=count, rate_per_second=rate, on_placed=report)
        except services.NothingInStock as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{len(placed)} orders placed"))
