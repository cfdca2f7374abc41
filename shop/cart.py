"""The shopping cart, kept in the session: SKU → quantity. Prices always come from the catalog.

The cart holds no more of a product than is in stock: what it cannot sell it caps (or, sold out,
refuses), and says so once, in a ``CartChange``. Stock can still fall under a cart after the fact
(another shopper checks out); ``fit_to_stock`` brings the cart back within it.
"""

from dataclasses import dataclass
from decimal import Decimal

from shop.models import Product
from shop.selectors import products_by_sku

SESSION_KEY = "cart"
MAX_QUANTITY = 99


@dataclass(frozen=True)
class CartChange:
    """What the shopper asked the cart to hold of a product, and what it holds now."""

    product: Product
    wanted: int
    quantity: int

    @property
    def capped(self) -> bool:
        return self.quantity < self.wanted

    @property
    def notice(self) -> str:
        """The one sentence that tells the shopper what the cart did, when it did not do as asked."""
        name = self.product.name
        if self.quantity == 0:
            return f"Sorry, {name} is sold out, so it is not in your cart."
        if self.quantity == self.product.stock:
            return (
                f"Only {self.product.stock} of {name} in stock, so your cart has {self.quantity}."
            )
        return (
            f"At most {MAX_QUANTITY} of {name} fit in one cart, so your cart has {self.quantity}."
        )


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def subtotal(self) -> Decimal:
        return self.product.price * self.quantity


class Cart:
    def __init__(self, session):
        self.session = session
        self.quantities: dict[str, int] = dict(session.get(SESSION_KEY, {}))

    def add(self, product: Product, quantity: int = 1) -> CartChange:
        """Add ``quantity`` more of ``product``, as far as its stock goes."""
        return self.put(product, self.quantities.get(product.sku, 0) + quantity)

    def put(self, product: Product, wanted: int) -> CartChange:
        """Hold ``wanted`` of ``product``, or as many as are in stock (none: the line goes)."""
        quantity = max(0, min(wanted, product.stock, MAX_QUANTITY))
        self.set(product.sku, quantity)
        return CartChange(product=product, wanted=wanted, quantity=quantity)

    def fit_to_stock(self) -> list[CartChange]:
        """Lower every line that is more than its product's stock now; the changes made."""
        return [
            self.put(line.product, line.quantity)
            for line in self.lines()
            if line.quantity > line.product.stock
        ]

    def set(self, sku: str, quantity: int) -> None:
        if quantity <= 0:
            self.quantities.pop(sku, None)
        else:
            self.quantities[sku] = min(quantity, MAX_QUANTITY)
        self._save()

    def remove(self, sku: str) -> None:
        self.set(sku, 0)

    def clear(self) -> None:
        self.quantities = {}
        self._save()

    def lines(self) -> list[CartLine]:
        products = products_by_sku(self.quantities)
        return [
            CartLine(products[sku], quantity)
            for sku, quantity in self.quantities.items()
            if sku in products
        ]

    def count(self) -> int:
        return sum(self.quantities.values())

    def __len__(self) -> int:
        return len(self.quantities)

    def _save(self) -> None:
        self.session[SESSION_KEY] = self.quantities
        self.session.modified = True


def cart_total(lines: list[CartLine]) -> Decimal:
    return sum((line.subtotal for line in lines), Decimal("0"))
