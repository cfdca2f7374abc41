"""What the engine tells whoever listens (the job log), without knowing who that is."""

from django.dispatch import Signal

# Sent by ``follow_up_claim`` once it has decided, in the thread of the execution, with
# ``follow_up_id``, ``claimed`` and ``follow_up``: the row as claimed (attempts counts this start),
# or as read when it was not claimed, or ``None`` when it does not exist.
follow_up_claim_decided = Signal()
