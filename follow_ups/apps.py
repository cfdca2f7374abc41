from django.apps import AppConfig


class FollowUpsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "follow_ups"
    verbose_name = "Follow-ups"

    def ready(self) -> None:
        # The engine's own kind (a message no task could use, kept for replay) and the worker
        # signals that turn such a message into a dead letter.
        from follow_ups import dead_letter_digest, dead_messages

        dead_messages.connect()
        dead_letter_digest.register_kind()
