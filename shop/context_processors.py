from shop.cart import Cart


def cart(request):
    """The number of items in the cart, for the header on every page."""
    return {"cart_count": Cart(request.session).count() if hasattr(request, "session") else 0}
