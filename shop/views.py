"""Storefront pages: catalog, product, cart."""

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
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
def product_image(request, sku: str):
    product = selectors.product_get(sku=sku)
    if product is None:
        raise Http404("No such product")
    svg = render_to_string("shop/product_image.svg", {"product": product})
    return HttpResponse(svg, content_type="image/svg+xml")


@require_GET
def cart_detail(request):
    lines = Cart(request.session).lines()
    return render(request, "shop/cart.html", {"lines": lines, "total": cart_total(lines)})


@require_POST
def cart_add(request, sku: str):
    product = selectors.product_get(sku=sku)
    if product is None:
        raise Http404("No such product")
    form = CartQuantityForm(request.POST or {"quantity": 1})
    if not form.is_valid() or form.cleaned_data["quantity"] < 1:
        messages.error(request, "Choose a quantity between 1 and 99.")
        return redirect("shop:product_detail", sku=sku)
    cart = Cart(request.session)
    cart.add(sku, form.cleaned_data["quantity"])
    if cart.quantities[sku] > product.stock:
        messages.warning(request, f"Only {product.stock} of {product.name} in stock.")
    messages.success(request, f"Added {product.name} to your cart.")
    return redirect("shop:cart_detail")


@require_POST
def cart_update(request, sku: str):
    form = CartQuantityForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a quantity between 0 and 99.")
        return redirect("shop:cart_detail")
    Cart(request.session).set(sku, form.cleaned_data["quantity"])
    messages.success(request, "Cart updated.")
    return redirect("shop:cart_detail")


@require_POST
def cart_remove(request, sku: str):
    Cart(request.session).remove(sku)
    messages.success(request, "Removed from your cart.")
    return redirect("shop:cart_detail")
