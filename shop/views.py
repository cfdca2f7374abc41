"""Storefront pages: catalog, product, cart."""

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from shop import selectors
from shop.cart import Cart, cart_total
from shop.forms import CartQuantityForm


@require_GET
def catalog(request, category_slug: str | None = None):
    categories = selectors.category_list()
    current = None
    if category_slug:
        current = next((c for c in categories if c.slug == category_slug), None)
        if current is None:
            raise Http404("No such category")
    products = selectors.product_list(category_slug=category_slug)
    return render(
        request,
        "shop/catalog.html",
        {"categories": categories, "current": current, "products": products},
    )


@require_GET
def product_detail(request, sku: str):
    product = selectors.product_get(sku=sku)
    if product is None:
        raise Http404("No such product")
    return render(request, "shop/product_detail.html", {"product": product})


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request):
    """Browsers and tools ask for /favicon.ico whatever the page links: the shop's icon."""
    return redirect(static("shop/favicon.svg"), permanent=True)


@require_GET
@cache_control(max_age=86400, public=True)
def product_image(request, sku: str):
    product = selectors.product_get(sku=sku)
    if product is None:
        raise Http404("No such product")
    svg = render_to_string("shop/product_image.svg", {"product": product})
    return HttpResponse(svg, content_type="image/svg+xml")


@require_GET
def cart_detail(request):
    cart = Cart(request.session)
    for change in cart.fit_to_stock():  # stock fell under the cart since it was filled
        messages.warning(request, change.notice)
    lines = cart.lines()
    return render(request, "shop/cart.html", {"lines": lines, "total": cart_total(lines)})


@require_POST
def cart_add(request, sku: str):
    product = selectors.product_get(sku=sku)
    if product is None:
        raise Http404("No such product")
    form = CartQuantityForm(request.POST or {"quantity": 1})
    if not form.is_valid():
        messages.error(request, f"{form.errors['quantity'][0]} {product.name} was not added.")
        return redirect("shop:product_detail", sku=sku)
    if form.cleaned_data["quantity"] < 1:
        messages.error(request, f"Choose a quantity of 1 or more. {product.name} was not added.")
        return redirect("shop:product_detail", sku=sku)
    change = Cart(request.session).add(product, form.cleaned_data["quantity"])
    if change.capped:
        messages.warning(request, change.notice)
    else:
        messages.success(request, f"Added {product.name} to your cart.")
    return redirect("shop:cart_detail")


@require_POST
def cart_update(request, sku: str):
    product = selectors.product_get(sku=sku)
    if product is None:
        raise Http404("No such product")
    form = CartQuantityForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"{form.errors['quantity'][0]} {product.name} was not changed.")
        return redirect("shop:cart_detail")
    change = Cart(request.session).put(product, form.cleaned_data["quantity"])
    if change.capped:
        messages.warning(request, change.notice)
    else:
        messages.success(request, "Cart updated.")
    return redirect("shop:cart_detail")


@require_POST
def cart_remove(request, sku: str):
    Cart(request.session).remove(sku)
    messages.success(request, "Removed from your cart.")
    return redirect("shop:cart_detail")
