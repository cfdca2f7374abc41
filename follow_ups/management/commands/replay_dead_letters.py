"""Give dead follow-ups another run: ``manage.py replay_dead_letters [--kind K] [--label L]``."""

from django.core.management.base import BaseCommand, CommandError

from follow_ups import registry, selectors, services


class Command(BaseCommand):
    help = "Reset dead follow-ups to pending and publish each once."

    def add_arguments(self, parser):
        parser.add_argument("--kind", help="only this kind of follow-up (e.g. warehouse_sync)")
        parser.add_argument(
            "--label",
            "--order",
            dest="label",
            help="only follow-ups with this label (e.g. an order number)",
        )

    def handle(self, *args, kind=None, label=None, **options):
        known = sorted(kind.name for kind in registry.kinds())
        if kind is not None and kind not in known:
            raise CommandError(
                f"There is no follow-up kind {kind!r}; the kinds are: {', '.join(known)}."
            )
        dead_ids = selectors.dead_letter_ids(kind=kind, label=label)
        if label is not None and not dead_ids and not selectors.label_exists(label=label):
            raise CommandError(f"No follow-up is labelled {label!r}.")
        replayed = services.follow_up_replay(follow_up_ids=dead_ids)
        self.stdout.write(f"Replayed {replayed} dead letter{'s' if replayed != 1 else ''}.")
