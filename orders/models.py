"""Orders, their lines, invoices and shipments.

An order's follow-ups (confirmation email, warehouse sync, invoice) are rows of the follow-up ledger
(``follow_ups.FollowUp``, subject ``order:<id>``), written in the order's own transaction: an order
and its follow-ups exist together or not at all.
"""

import uuid

from django.db import models


class Order(models.Model):
    # Not stored: what the customer is told, worked out from the follow-ups
    # (``orders.selectors.order_progress``).
    class Status(models.TextChoices):
        PLACED = "placed", "Order placed"  # its follow-ups are on their way
        DELAYED = "delayed", "Delayed"  # one is retrying or waiting long; none is dead
        NEEDS_ATTENTION = "needs_attention", "Needs our attention"  # one is a dead letter
        READY = "ready", "Order ready"  # every one succeeded

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Human number shown to customers ("CS-000042"); never used to look an order up from a URL.
    number = models.CharField(max_length=20, unique=True)
    email = models.EmailField()
    name = models.CharField(max_length=200)
    address_line1 = models.CharField(max_length=200)
    address_city = models.CharField(max_length=100)
    address_postal_code = models.CharField(max_length=20)
    address_country = models.CharField(max_length=60)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    payment_reference = models.CharField(max_length=64)
    # The card's last four digits, for the customer to recognise it; the number is never stored.
    card_last4 = models.CharField(max_length=4, blank=True)
    shipment_reference = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    """A snapshot of what was bought, at the price charged, whatever the catalog says later."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="order_line_unique_product"),
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.name}"

    @property
    def subtotal(self):
        return self.unit_price * self.quantity


class Invoice(models.Model):
    """The invoice PDF, rendered once per order and kept in the database so every process can serve
    it. Its number is its own, from ``InvoiceSequence``: gap-free, as tax authorities ask."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="invoice")
    number = models.PositiveIntegerField(unique=True)
    pdf = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.display_number

    @property
    def display_number(self) -> str:
        return invoice_display_number(self.number)


def invoice_display_number(number: int) -> str:
    return f"INV-{number:06d}"


class InvoiceSequence(models.Model):
    """The last invoice number issued; one row. A number is taken under this row's lock in the
    transaction that stores its invoice, so a rolled-back invoice gives its number back: no gaps."""

    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"last invoice number: {self.last}"


class CheckoutRequest(models.Model):
    """An Idempotency-Key seen at checkout, claimed in its own committed row before the card is
    charged (Stripe's semantics): while ``claimed_until`` is ahead a second request with the key is
    told the first is in progress; once ``order`` is set the same key and body give that order
    back. A claim whose request died lapses at ``claimed_until``, and is taken over only once the
    charge it started (``payment_attempt``) is attached or voided, so a retry never charges twice.
    """

    key = models.CharField(max_length=255, unique=True)
    request_hash = models.CharField(max_length=64)
    order = models.OneToOneField(
        Order, null=True, blank=True, on_delete=models.CASCADE, related_name="checkout_request"
    )
    # The request holding the key: only it may start a charge or save the order under it.
    owner = models.CharField(max_length=32, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    payment_attempt = models.ForeignKey(
        "PaymentAttempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


# --- What the recurring and delayed jobs keep ----------------------------------------------------
# The rows whose due times drive the delayed jobs (a cart reminder, a review request): delays live
# here, never in broker countdowns.


class SalesReport(models.Model):
    """The nightly CSV of one day's sales per product, kept so staff can download it again."""

    day = models.DateField(unique=True)
    csv = models.TextField()
    orders = models.PositiveIntegerField()
    revenue = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"Sales {self.day}"


class OrderShipment(models.Model):
    """The warehouse shipped the order: when, and the review request due.

    ``shipped_email_sent_at`` / ``review_sent_at``: when the email was handed to its follow-up
    (``shipped_email``, ``review_request_email``), written in the same transaction; from then on
    the follow-up owns the sending (retries, dead letter, replay).
    """

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="shipment")
    shipped_at = models.DateTimeField()
    shipped_email_sent_at = models.DateTimeField(null=True, blank=True)
    review_due_at = models.DateTimeField(db_index=True)
    review_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-shipped_at"]

    def __str__(self) -> str:
        return f"{self.order_id} shipped {self.shipped_at:%Y-%m-%d}"


class WarehouseCursor(models.Model):
    """How far reconciliation has read a warehouse feed ("shipped"): the position after the last
    entry recorded. Advanced in the transaction that records a chunk, so no entry is read twice."""

    feed = models.CharField(max_length=32, unique=True)
    position = models.CharField(max_length=200, blank=True)  # opaque to us: the warehouse's cursor
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.feed} after {self.position or 'the start'}"


class AbandonedCart(models.Model):
    """A session's cart, recorded once checkout learns the shopper's email; deleted on checkout.

    The cart itself lives in the session (``shop.cart``); this row is the copy a reminder needs:
    who to write to, what was in it, and when it was last touched.
    """

    session_key = models.CharField(max_length=40, unique=True)
    email = models.EmailField()
    items = models.JSONField(default=dict)  # SKU -> quantity
    touched_at = models.DateTimeField(db_index=True)
    # When the reminder was handed to its follow-up (``cart_reminder_email``), in one transaction.
    reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-touched_at"]

    def __str__(self) -> str:
        return f"Cart of {self.email}"


class PaymentAttempt(models.Model):
    """One charge the shop asked the gateway for, written (and committed) before the charge.

    The charge runs outside every row lock and transaction; the order is saved afterwards in its
    own transaction, which attaches it here. An attempt whose order did not commit is voided by its
    ``payment_void`` follow-up, written with this row: a charge never outlives its order unseen.
    The gateway's idempotency key is this row's id, so a repeated charge or void is one at the gateway.
    """

    class Status(models.TextChoices):
        STARTED = "started"  # the row is committed; the charge may or may not have happened
        CHARGED = "charged"
        DECLINED = "declined"
        ATTACHED = "attached"  # the order committed with this charge
        VOIDED = "voided"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    checkout_key = models.CharField(max_length=255, blank=True, db_index=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    card_last4 = models.CharField(max_length=4)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTED)
    reference = models.CharField(max_length=64, blank=True)  # the gateway's charge id
    order = models.OneToOneField(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="payment_attempt"
    )
    failure = models.CharField(max_length=300, blank=True)  # why the order did not commit
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.amount} on •••• {self.card_last4} ({self.status})"


class CheckoutFailures(models.Model):
    """Failed checkouts of one client address in one fixed window (``CHECKOUT_FAILURE_WINDOW_SECONDS``):
    refused cards and rejected forms. Past ``CHECKOUT_FAILURES_PER_CLIENT`` the client waits for the
    next window; a placed order never counts. Kept in the database so every web process shares it."""

    client = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client", "window_start"], name="checkout_failures_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.client}: {self.failures} since {self.window_start:%H:%M}"
