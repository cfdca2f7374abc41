"""The development outbox: mail kept by the local email backend, readable in the browser."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from notifications import services
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


# The signed token is the credential: a mailbox provider's one-click POST (RFC 8058) carries no
# CSRF token, and a forged POST can only unsubscribe the address the token was made for.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """GET asks (link scanners fetch links: a GET must not unsubscribe); POST unsubscribes."""
    email = services.email_unsubscribe_token_read(token=token)
    if email is None:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        services.email_unsubscribe(email=email)
    return render(
        request,
        "notifications/unsubscribe.html",
        {"email": email, "done": request.method == "POST"},
    )
