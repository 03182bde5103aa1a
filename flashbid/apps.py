from django.apps import AppConfig


class WiringConfig(AppConfig):
    """The project's wiring as an app, for what Django only finds in apps: the system checks."""

    name = "flashbid"
    label = "flashbid"
    verbose_name = "FlashBid wiring"

    def ready(self) -> None:
        from flashbid import checks  # noqa: F401  (registers the checks)
