"""The development outbox: mail kept by the local email backend, readable in the browser."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from notifications.models import OutboxMessage


@require_GET
def outbox(request, message_id: int | None = None):
    if not settings.DEBUG:
        raise Http404("The outbox exists only in development")
    selected = get_object_or_404(OutboxMessage, pk=message_id) if message_id else None
    recent = OutboxMessage.objects.all()[:100]
    return render(
        request, "notifications/outbox.html", {"messages_kept": recent, "selected": selected}
    )
