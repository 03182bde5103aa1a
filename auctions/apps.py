from django.apps import AppConfig


class AuctionsConfig(AppConfig):
    name = "auctions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auctions import receivers  # noqa: F401  (refreshes Redis params on session edits)
        from auctions.persistence import PersistLagCollector
        from core.metrics import scrape_collector_register

        scrape_collector_register(PersistLagCollector())
