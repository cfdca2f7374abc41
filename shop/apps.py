from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from shop.follow_ups import register_kinds

        register_kinds()
