"""Who is asking: the user a bearer token or a login session speaks for (reads through the user
cache, accounts.user_cache)."""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.utils.crypto import constant_time_compare

from accounts.tokens import token_verify
from accounts.user_cache import CurrentUser, get_current_user


async def user_from_token(token: str) -> CurrentUser | None:
    """The active user a bearer token speaks for, or None (bad, expired, revoked, inactive)."""
    claims = token_verify(token)
    if claims is None:
        return None
    user = await get_current_user(claims["sub"])
    if user is None or not user.is_active or user.token_version != claims["ver"]:
        return None
    return user


def session_hash_matches(user: CurrentUser, session_hash: str | None) -> bool:
    """Whether a Django login session's auth hash still matches the user (password unchanged)."""
    return bool(session_hash) and constant_time_compare(session_hash, user.session_hash)


async def user_from_login_session(session) -> CurrentUser | None:
    """The active user a Django login session (a SessionStore) speaks for, or None (no login,
    inactive, or the password changed since)."""
    user_id = await session.aget(SESSION_KEY)
    if not user_id:
        return None
    user = await get_current_user(user_id)
    if user is None or not user.is_active or not session_hash_matches(user, await session.aget(HASH_SESSION_KEY)):
        return None
    return user


def login_session(session_key: str | None):
    """The Django login session a session cookie names (a SessionStore; empty for None)."""
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)
