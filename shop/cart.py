"""The shopping cart, kept in the session: SKU → quantity. Prices always come from the catalog."""

from dataclasses import dataclass
from decimal import Decimal

from shop.models import Product
from shop.selectors import products_by_sku

SESSION_KEY = "cart"
MAX_QUANTITY = 99


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

    def add(self, sku: str, quantity: int = 1) -> None:
        self.set(sku, self.quantities.get(sku, 0) + quantity)

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
