from django.apps import AppConfig


class AuctionsConfig(AppConfig):
    name = "auctions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auctions import signals  # noqa: F401  (refreshes Redis params on session edits)
