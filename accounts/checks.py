"""System checks of the accounts' settings: the abuse limits must be rates `limits` can read."""

from django.conf import settings
from django.core.checks import Error, register
from limits import parse

RATE_SETTINGS = ("LOGIN_FAILURES_PER_ADDRESS", "LOGIN_FAILURES_PER_NAME_AND_ADDRESS", "REGISTRATIONS_PER_ADDRESS",
                 "PASSWORD_RESETS_PER_ADDRESS")


@register()
def abuse_limit_rates(app_configs, **kwargs) -> list[Error]:
    errors = []
    for name in RATE_SETTINGS:
        rate = getattr(settings, name)
        try:
            if rate:
                parse(rate)
        except ValueError:
            errors.append(Error(f"{name} is not a rate: {rate!r}", hint="Write it like '10 per 15 minutes'.",
                                id="accounts.E001"))
    return errors
