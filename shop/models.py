"""The catalog: categories, the products people buy, and the alerts when one runs low."""

from django.db import models


class Category(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    description = models.TextField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)
    # The generated image's colour, so every product looks different without image files.
    hue = models.PositiveSmallIntegerField(default=200)

    class Meta:
        ordering = ["category__position", "name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="product_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class LowStockAlert(models.Model):
    """One alert per crossing below the threshold; resolved when stock is back above it.

    ``notified_at``: when the alert was handed to its staff emails (``low_stock_alert_email``
    follow-ups, one per recipient); from then on the follow-ups own the sending.
    """

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    stock = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["product"],
                condition=models.Q(resolved_at__isnull=True),
                name="shop_low_stock_alert_one_open_per_product",
            ),
        ]

    def __str__(self) -> str:
        return f"Low stock {self.product_id}: {self.stock}"
