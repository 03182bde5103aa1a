"""JWT access tokens (HS256, PyJWT): issue and verify. Claims: sub, iat, exp, ver (token version)."""

import time

import jwt
from django.conf import settings

ALGORITHM = "HS256"


def token_issue(*, user_id: str, token_version: int, ttl_seconds: int | None = None) -> tuple[str, int]:
    """Return (token, expires_in seconds)."""
    ttl = ttl_seconds if ttl_seconds is not None else settings.JWT_ACCESS_TTL_SECONDS
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + ttl, "ver": int(token_version)}
    return jwt.encode(claims, settings.JWT_SIGNING_KEY, algorithm=ALGORITHM), ttl


def token_verify(token: str) -> dict | None:
    """The claims of a valid, unexpired token signed by us; None for anything else."""
    try:
        claims = jwt.decode(
            token,
            settings.JWT_SIGNING_KEY,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "iat", "exp", "ver"]},
        )
    except jwt.PyJWTError:
        return None
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("ver"), int):
        return None
    return claims
