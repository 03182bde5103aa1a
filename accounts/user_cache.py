"""The user cache: `get_current_user` with three layers, so the hot path never runs SQL.

1. an in-process TTL+LRU cache (AUTH_LOCAL_CACHE_TTL_SECONDS, bounded size);
2. the Redis user hash fb:user:<id> (username, weight, is_admin, is_active, token version,
   session auth hash), written at once whenever the user changes;
3. PostgreSQL, only on a cold miss, which refills (2).
A change reaches every process within the local TTL: after every save, and after every revocation,
accounts.receivers / accounts.services write layer 2 from the row as committed (user_cache_refresh).

The token version in Redis never goes backwards (lua/user_store.lua): a cold miss that read the row
before a revocation committed, or a refresh that finishes after a later one, cannot bring revoked
tokens back. PostgreSQL holds the true version (accounts.models.token_version_bump); the hash's
field is "ver" since issue 13: a hash without it (written when a password rehash could move the
version in Redis alone) reads as a miss and is rewritten from PostgreSQL.
"""

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from cachetools import TTLCache
from django.conf import settings

from accounts.models import User
from core.db import orm
from core.metrics import AUTH_CACHE
from core.redis import get_async_redis, get_redis, key
from core.scripts import lua_sources, script, script_queue

USER_HASH_TTL_SECONDS = 24 * 3600
SOURCES = lua_sources(Path(__file__).resolve().parent / "lua", "user_store")


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: str
    username: str
    weight: float
    is_admin: bool
    is_active: bool
    token_version: int
    session_hash: str


_local: TTLCache = TTLCache(maxsize=settings.AUTH_LOCAL_CACHE_SIZE, ttl=settings.AUTH_LOCAL_CACHE_TTL_SECONDS)
# Sync callers (pages, admin) run in threads; cachetools' caches are not thread-safe.
_local_lock = threading.Lock()


def user_hash_key(user_id: object) -> str:
    return key("user", user_id)


def user_hash_fields(user: User) -> dict[str, str]:
    return {
        "username": user.username,
        "weight": repr(float(user.weight)),
        "is_admin": "1" if user.is_staff else "0",
        "is_active": "1" if user.is_active else "0",
        "ver": str(user.token_version),
        "sh": user.get_session_auth_hash(),
    }


def _from_hash(user_id: str, data: dict[str, str]) -> CurrentUser:
    return CurrentUser(
        id=user_id,
        username=data["username"],
        weight=float(data["weight"]),
        is_admin=data["is_admin"] == "1",
        is_active=data["is_active"] == "1",
        token_version=int(data["ver"]),
        session_hash=data.get("sh", ""),
    )


def user_cache_store(user: User, *, pipe=None, fill: bool = False) -> dict[str, str]:
    """Write the Redis layer from `user`, a row as PostgreSQL has it, and forget the local copy.

    `fill` is for a cold miss (the row was read without knowing of any change in flight): it writes
    only over a hash with an older token version or none. Otherwise the row was read after a
    change committed and is written unless the hash already has a newer version. Returns the hash
    as it stands afterwards. With `pipe`, the write joins that pipeline (the caller executes it) and
    the fields of `user` are returned."""
    fields = user_hash_fields(user)
    args = [USER_HASH_TTL_SECONDS, "fill" if fill else "store", fields["ver"]]
    for name, value in fields.items():
        args += [name, value]
    user_store = script(get_redis(), "user_store", SOURCES["user_store"])
    if pipe is not None:
        script_queue(pipe, user_store, keys=[user_hash_key(user.pk)], args=args)
        local_forget(str(user.pk))
        return fields
    reply = user_store(keys=[user_hash_key(user.pk)], args=args)
    local_forget(str(user.pk))
    if not reply:
        return fields
    return dict(zip(reply[::2], reply[1::2], strict=True))


def user_cache_refresh(user_id: object) -> None:
    """Write the Redis layer from the user's committed row (after a save or a revocation), or drop
    it if the user is gone. One query."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        get_redis().delete(user_hash_key(user_id))
        local_forget(str(user_id))
    else:
        user_cache_store(user)


def local_forget(user_id: str) -> None:
    with _local_lock:
        _local.pop(user_id, None)


def local_clear() -> None:
    with _local_lock:
        _local.clear()


def _normalise_id(user_id: str) -> str | None:
    try:
        return str(uuid.UUID(user_id))
    except (ValueError, TypeError, AttributeError):
        return None


def _load_cold(user_id: str) -> CurrentUser | None:
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return None
    AUTH_CACHE.labels("db").inc()
    return _from_hash(user_id, user_cache_store(user, fill=True))


def _local_get(user_id: str) -> CurrentUser | None:
    with _local_lock:
        return _local.get(user_id)


def _local_put(user: CurrentUser) -> None:
    with _local_lock:
        _local[user.id] = user


async def get_current_user(user_id: str) -> CurrentUser | None:
    """The user with this id from the cheapest layer that has it; None if no such user."""
    user_id = _normalise_id(user_id)
    if user_id is None:
        return None
    if (user := _local_get(user_id)) is not None:
        AUTH_CACHE.labels("local").inc()
        return user
    data = await get_async_redis().hgetall(user_hash_key(user_id))
    if "ver" in data:
        AUTH_CACHE.labels("redis").inc()
        user = _from_hash(user_id, data)
    else:
        user = await orm(_load_cold, user_id)
    if user is not None:
        _local_put(user)
    return user


def get_current_user_sync(user_id: str) -> CurrentUser | None:
    """The same lookup for sync code (pages, management commands)."""
    user_id = _normalise_id(user_id)
    if user_id is None:
        return None
    if (user := _local_get(user_id)) is not None:
        return user
    data = get_redis().hgetall(user_hash_key(user_id))
    user = _from_hash(user_id, data) if "ver" in data else _load_cold(user_id)
    if user is not None:
        _local_put(user)
    return user
