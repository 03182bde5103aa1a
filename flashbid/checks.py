"""System checks of the deployment: both signing keys meet Django's W009 rules.

Django's own security.W009 only warns about a weak SECRET_KEY, and knows nothing of the JWT key,
which lets whoever knows it sign in as any bidder. Here a weak key of either kind is an error of
`manage.py check --deploy`, so a deploy gate that runs it fails.
"""

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)

SIGNING_KEYS = {
    "SECRET_KEY": ("flashbid.E001", "sessions, password reset links and every signed value"),
    "JWT_SIGNING_KEY": ("flashbid.E002", "the API's access tokens: whoever knows it can act as any user"),
}


def signing_key_is_strong(key: str) -> bool:
    """Django's W009 rules: long enough, not one repeated character, not a startproject placeholder."""
    return (
        len(key) >= SECRET_KEY_MIN_LENGTH
        and len(set(key)) >= SECRET_KEY_MIN_UNIQUE_CHARACTERS
        and not key.startswith(SECRET_KEY_INSECURE_PREFIX)
    )


@register(Tags.security, deploy=True)
def check_signing_keys(app_configs, **kwargs) -> list[Error]:
    errors = []
    for name, (check_id, signs) in SIGNING_KEYS.items():
        if not signing_key_is_strong(getattr(settings, name, "") or ""):
            errors.append(Error(
                f"{name} is weak: fewer than {SECRET_KEY_MIN_LENGTH} characters, fewer than "
                f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones, or prefixed '{SECRET_KEY_INSECURE_PREFIX}'. "
                f"It signs {signs}.",
                hint=f"Set {name} to a long random value, e.g. "
                     "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'.",
                id=check_id,
            ))
    return errors
