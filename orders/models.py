"""Orders and their follow-ups.

A ``FollowUp`` row is both the outbox and the status ledger: it is written in the same transaction as
its order, published to Celery after commit, re-published by the relay if that publish was lost, and
it records every attempt. An order and its follow-ups exist together or not at all.
"""

import uuid

from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        READY = "ready"

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


class FollowUp(models.Model):
    class Kind(models.TextChoices):
        CONFIRMATION_EMAIL = "confirmation_email", "Confirmation email"
        WAREHOUSE_SYNC = "warehouse_sync", "Warehouse sync"
        INVOICE = "invoice", "Invoice"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        DEAD = "dead"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="follow_ups")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The Celery task id holding the claim: the broker redelivers the same id only if that
    # delivery was never acknowledged, i.e. the worker running it died.
    claimed_by_task_id = models.CharField(max_length=64, blank=True)
    last_error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "kind"], name="follow_up_one_per_kind"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="follow_up_status_created")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.order_id}: {self.status}"


class Invoice(models.Model):
    """The invoice PDF, rendered once per order and kept in the database so every process can serve it."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="invoice")
    pdf = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Invoice for {self.order_id}"


class CheckoutRequest(models.Model):
    """An idempotency key seen at checkout: the same key and body give the same order back."""

    key = models.CharField(max_length=255, unique=True)
    request_hash = models.CharField(max_length=64)
    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="checkout_request")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
