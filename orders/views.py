"""Checkout and order pages."""

import functools
import math
import secrets

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods

from orders import recurring, selectors, services
from orders.addresses import address_country_name
from orders.forms import CheckoutForm
from orders.payments import PaymentRefused, payment_test_cards
from shop.cart import Cart, cart_total

CHECKOUT_TOKENS_KEY = "checkout_tokens"


def no_referrer(view):
    """An order's URL is its access token: pages under it send no ``Referer`` anywhere, not even
    to our own pages (whose access log would record it)."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        return response

    return wrapped


@require_http_methods(["GET", "POST"])
def checkout(request):
    cart = Cart(request.session)
    if request.method == "GET":
        for change in cart.fit_to_stock():  # stock fell under the cart since it was filled
            messages.warning(request, change.notice)
    lines = cart.lines()
    form = CheckoutForm(request.POST or None, initial={"token": _checkout_token_issue(request)})
    client = services.checkout_client(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
    )
    if request.method == "POST" and form.is_bound:
        _abandoned_cart_remember(request, form, cart)
        if not form.is_valid():
            services.checkout_failure_record(client=client)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["token"] not in request.session.get(CHECKOUT_TOKENS_KEY, []):
            services.checkout_failure_record(client=client)
            messages.error(
                request, "This checkout form has expired. Please check and submit again."
            )
            return redirect("orders:checkout")
        earlier = selectors.order_for_checkout_key(key=_checkout_key(data["token"]))
        if earlier is not None:  # a double click: the first click already placed the order
            return redirect("orders:order_detail", order_id=earlier.pk)
        if not lines:  # emptied in another tab since the form was shown
            messages.error(request, "Nothing was ordered or charged: your cart was emptied.")
            return redirect("shop:cart_detail")
        try:
            placed = services.order_place(
                email=data["email"],
                name=data["name"],
                address=services.Address(
                    line1=data["line1"],
                    city=data["city"],
                    postal_code=data["postal_code"],
                    country=data["country"],
                ),
                lines=[
                    services.LineRequest(sku=line.product.sku, quantity=line.quantity)
                    for line in lines
                ],
                card_number=data["card_number"],
                idempotency_key=_checkout_key(data["token"]),
                client=client,
            )
        except PaymentRefused as exc:  # counted against the client: its slot is kept
            form.add_error("card_number", exc.message)
        except services.CheckoutThrottled as exc:
            form.add_error(
                None,
                "Too many checkouts from your connection failed. "
                f"Please try again in {math.ceil(exc.wait / 60)} minutes.",
            )
            response = _checkout_render(request, form, lines, status=429)
            response["Retry-After"] = str(exc.wait)
            return response
        except services.IdempotencyKeyInProgress:  # a double click while the first still pays
            form.add_error(
                None,
                "This order is already being placed. Wait a moment, then submit again to see it.",
            )
            return _checkout_render(request, form, lines, status=409)
        except services.OutOfStock as exc:
            # Stock changed under the form: the cart takes what is left, the form keeps what was
            # typed, and the shopper checks the new total and submits again.
            changes = cart.fit_to_stock()
            for change in changes:
                messages.warning(request, change.notice)
            if not changes:
                messages.error(request, str(exc))
            lines = cart.lines()
            if not lines:
                return redirect("shop:cart_detail")
        except services.CheckoutError as exc:
            messages.error(request, str(exc))
        else:
            cart.clear()
            recurring.abandoned_cart_forget(session_key=request.session.session_key or "")
            messages.success(request, f"Thank you! Order {placed.order.number} is placed.")
            return redirect("orders:order_detail", order_id=placed.order.pk)
    elif request.method == "GET" and not lines:  # the cart page says it is empty
        return redirect("shop:cart_detail")
    return _checkout_render(request, form, lines)


def _checkout_render(request, form: CheckoutForm, lines, status: int = 200):
    client = services.checkout_client(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
    )
    return render(
        request,
        "orders/checkout.html",
        {
            "form": form,
            "lines": lines,
            "total": cart_total(lines),
            "test_cards": payment_test_cards(),
            "checkout_limit": selectors.checkout_limit_get(client=client),
        },
        status=status,
    )


def _abandoned_cart_remember(request, form: CheckoutForm, cart: Cart) -> None:
    """Once checkout knows the shopper's email and they asked for a reminder, keep a copy of the
    cart for it. Without the tick, nothing is kept: no mail goes to an address nobody confirmed."""
    form.is_valid()  # cleans every field; the email may be valid even if the card is not
    email = form.cleaned_data.get("email")
    if not form.cleaned_data.get("remind_me"):
        recurring.abandoned_cart_forget(session_key=request.session.session_key or "")
        return
    if not email or not cart.quantities:
        return
    if request.session.session_key is None:
        request.session.save()
    recurring.abandoned_cart_record(
        session_key=request.session.session_key, email=email, items=dict(cart.quantities)
    )


def _checkout_token_issue(request) -> str:
    """A one-time token per checkout form: a double submit of one form makes one order."""
    token = secrets.token_urlsafe(24)
    tokens = request.session.get(CHECKOUT_TOKENS_KEY, [])[-9:] + [token]
    request.session[CHECKOUT_TOKENS_KEY] = tokens
    return token


def _checkout_key(token: str) -> str:
    return f"checkout-form:{token}"


@no_referrer
@require_GET
def order_detail(request, order_id: str):
    order = selectors.order_get(order_id=order_id)
    if order is None:
        raise Http404("No such order")
    # htmx polls for the progress part alone, so the page updates without a reload.
    template = (
        "orders/_order_progress.html"
        if request.headers.get("HX-Request")
        else "orders/order_detail.html"
    )
    response = render(
        request,
        template,
        {
            "order": order,
            "country": address_country_name(order.address_country),
            "progress": selectors.order_progress(order),
            # The state the polling page shows now: its live region is replaced (and so read
            # out by screen readers) only when the state changes, not on every poll.
            "shown_state": request.GET.get("shown", ""),
        },
    )
    patch_vary_headers(response, ["HX-Request"])  # one URL, two bodies: caches must tell them apart
    return response


@no_referrer
@require_GET
def invoice_pdf(request, order_id: str):
    order = selectors.order_get(order_id=order_id)
    pdf = selectors.invoice_pdf_get(order=order) if order is not None else None
    if pdf is None:
        raise Http404("No invoice for this order yet")
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="invoice-{order.number}.pdf"'
    return response
