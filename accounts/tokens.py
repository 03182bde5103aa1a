"""JWT access tokens (HS256, PyJWT): issue and verify. Claims: sub, iat, exp, ver (token version)."""

import threading
import time

import jwt
from cachetools import LRUCache
from django.conf import settings

ALGORITHM = "HS256"


def token_issue(*, user_id: str, token_version: int, ttl_seconds: int | None = None) -> tuple[str, int]:
    """Return (token, expires_in seconds)."""
    ttl = ttl_seconds if ttl_seconds is not None else settings.JWT_ACCESS_TTL_SECONDS
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + ttl, "ver": int(token_version)}
    return jwt.encode(claims, settings.JWT_SIGNING_KEY, algorithm=ALGORITHM), ttl


# Tokens whose signature has been checked, with their claims: a bidder's every bid carries the same
# token, and checking the HMAC and decoding the JSON again would be a tenth of a bid's CPU. Expiry
# is still checked on every use; revocation is the user's token version (accounts.selectors.user_from_token).
_verified: LRUCache = LRUCache(maxsize=20_000)  # ~0.5 KB each
_verified_lock = threading.Lock()


def token_verify(token: str) -> dict | None:
    """The claims of a valid, unexpired token signed by us; None for anything else."""
    cache_key = (settings.JWT_SIGNING_KEY, token)
    with _verified_lock:
        claims = _verified.get(cache_key)
    if claims is not None:
        return claims if claims["exp"] > time.time() else None
    claims = _verify(token)
    if claims is not None:
        with _verified_lock:
            _verified[cache_key] = claims
    return claims


def _verify(token: str) -> dict | None:
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
