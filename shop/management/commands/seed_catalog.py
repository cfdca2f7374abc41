"""Create the demo catalog. Safe to run again: existing products (and their stock) are left alone."""

from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from shop.models import Category, Product

CATALOG = {
    ("seeds", "Seeds"): [
        ("SEED-CEL", "Celery seeds", "Tall Utah celery, crisp and green. 500 seeds.", "3.50", 120),
        (
            "SEED-TOM",
            "Cherry tomato seeds",
            "Sweet Sungold cherry tomatoes. 30 seeds.",
            "2.95",
            150,
        ),
        ("SEED-BAS", "Genovese basil seeds", "Big leaves for pesto. 200 seeds.", "2.50", 200),
        (
            "SEED-CAR",
            "Rainbow carrot seeds",
            "Purple, yellow and orange roots. 400 seeds.",
            "2.75",
            90,
        ),
        ("SEED-LET", "Butterhead lettuce seeds", "Soft heads all summer. 300 seeds.", "2.20", 110),
        ("SEED-SUN", "Giant sunflower seeds", "Grows past three metres. 25 seeds.", "3.10", 80),
    ],
    ("tools", "Tools"): [
        (
            "TOOL-TRW",
            "Stainless trowel",
            "A trowel that will outlive you, with an ash handle.",
            "18.00",
            40,
        ),
        ("TOOL-PRN", "Bypass pruner", "Clean cuts for stems up to 2 cm.", "24.50", 35),
        ("TOOL-HOE", "Dutch hoe", "Push-pull weeding without bending.", "32.00", 20),
        ("TOOL-FRK", "Digging fork", "Four square tines, forged steel.", "39.00", 15),
        ("TOOL-CAN", "Watering can, 10 l", "Galvanised, with a brass rose.", "45.00", 25),
        ("TOOL-GLV", "Garden gloves", "Nitrile-coated, breathable, size M.", "9.90", 60),
    ],
    ("soil", "Soil & Feed"): [
        ("SOIL-CMP", "Peat-free compost, 40 l", "Rich, peat-free, ready to sow in.", "8.50", 70),
        ("SOIL-WRM", "Worm castings, 5 l", "Gentle feed for seedlings.", "12.00", 45),
        ("SOIL-SEA", "Seaweed feed, 1 l", "Liquid feed for leafy crops.", "9.75", 55),
        ("SOIL-MUL", "Straw mulch bale", "Keeps the soil moist and the weeds down.", "14.00", 30),
        ("SOIL-LIM", "Garden lime, 2 kg", "Sweetens acid soil for brassicas.", "6.40", 40),
        ("SOIL-BON", "Bone meal, 1.5 kg", "Slow phosphorus for strong roots.", "7.20", 50),
    ],
    ("pots", "Pots & Planters"): [
        ("POT-TER20", "Terracotta pot, 20 cm", "Classic, breathable, frost-resistant.", "6.90", 80),
        ("POT-TER30", "Terracotta pot, 30 cm", "Room for a tomato plant.", "11.50", 60),
        ("POT-RAI", "Raised bed kit", "Larch, 120 × 80 cm, no tools needed.", "89.00", 10),
        ("POT-TRY", "Seed tray set", "Six trays with lids, reusable.", "15.00", 45),
        ("POT-HNG", "Hanging basket", "Coir-lined, 30 cm, with chains.", "13.25", 35),
        ("POT-WIN", "Window box", "Recycled plastic, 60 cm, with drainage.", "16.80", 40),
    ],
}


class Command(BaseCommand):
    help = "Create the demo catalog (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        created = 0
        for position, ((slug, name), products) in enumerate(CATALOG.items()):
            category, _ = Category.objects.update_or_create(
                slug=slug, defaults={"name": name, "position": position}
            )
            for index, (sku, product_name, description, price, stock) in enumerate(products):
                _, was_created = Product.objects.get_or_create(
                    sku=sku,
                    defaults={
                        "name": product_name,
                        "category": category,
                        "description": description,
                        "price": Decimal(price),
                        "stock": stock,
                        "hue": (position * 90 + index * 17) % 360,
                    },
                )
                created += was_created
        total = Product.objects.count()
        self.stdout.write(f"Catalog ready: {total} products ({created} new).")
