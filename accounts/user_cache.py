"""The user cache: `get_current_user` with three layers, so the hot path never runs SQL.

1. an in-process TTL+LRU cache (bounded size), kept coherent by the change channel (below);
2. the Redis user hash fb:user:<id> (username, weight, is_admin, is_active, token version,
   session auth hash), written at once whenever the user changes;
3. PostgreSQL, only on a cold miss, which refills (2).
After every save, and after every revocation, accounts.receivers / accounts.services write layer 2
from the row as committed (user_cache_refresh).

**The change channel.** Every write of a user hash (lua/user_store.lua: a store, a cold fill, a
drop) publishes the user's id on CHANGES_CHANNEL in the same atomic step. Each event loop that
reads users (a web process has one) runs one subscriber task, started by its first
`get_current_user`, that forgets the id locally as the message arrives: a revocation reaches every
web process in milliseconds. While that subscriber is subscribed, an entry may live
AUTH_LOCAL_CACHE_LONG_TTL_SECONDS (minutes): with many bidders each one bids far less often than
every few seconds, and a short TTL cost most bids a second Redis round trip. Wherever a message
could have been missed, an entry lives only AUTH_LOCAL_CACHE_TTL_SECONDS (5 s, the contract's
bound), as before the channel existed:
- before the subscription is confirmed and after its connection is lost; the cache is cleared at
  both moments (messages may have been missed in between). A connection that dies silently is
  found by an unanswered ping within 2 x SUBSCRIBER_PING_SECONDS, and treated the same way;
- a read that a message may have overtaken (one arrived while its HGETALL was in flight, so the
  reply could predate the change);
- sync callers (the pages' threads, Celery, commands), which have no subscriber.

The token version in Redis never goes backwards (lua/user_store.lua): a cold miss that read the row
before a revocation committed, or a refresh that finishes after a later one, cannot bring revoked
tokens back. PostgreSQL holds the true version (accounts.models.token_version_bump); the hash's
field is "ver" since issue 13: a hash without it (written when a password rehash could move the
version in Redis alone) reads as a miss and is rewritten from PostgreSQL.
"""

import asyncio
import logging
import threading
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from cachetools import TLRUCache
from django.conf import settings
from redis.exceptions import RedisError

from accounts.models import User
from core.db import orm
from core.metrics import AUTH_CACHE
from core.redis import get_async_redis, get_redis, key
from core.scripts import lua_sources, script, script_queue

logger = logging.getLogger(__name__)

USER_HASH_TTL_SECONDS = 24 * 3600
SOURCES = lua_sources(Path(__file__).resolve().parent / "lua", "user_store")
# The subscriber pings its connection after this long without a message, and gives it up if the
# ping is not answered within the same time.
SUBSCRIBER_PING_SECONDS = 1.0
# Waits before subscribing again after a loss: doubling from the first to the second.
SUBSCRIBER_RETRY_SECONDS = (0.1, 5.0)
# The subscriber's connection, as CLIENT LIST names it.
SUBSCRIBER_CLIENT_NAME = "flashbid-user-changes"


def changes_channel() -> str:
    """The channel every write of a user hash publishes the user's id on. A plain (not sharded)
    channel: on Redis Cluster a PUBLISH on any node reaches the subscribers of every node, so a
    subscriber connected to any one node hears every change."""
    return key("user-changes")


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: str
    username: str
    weight: float
    is_admin: bool
    is_active: bool
    token_version: int
    session_hash: str


def _expires(_user_id: str, entry: tuple[CurrentUser, float], now: float) -> float:
    return now + entry[1]


# user id -> (user, seconds to live), each entry with its own lifetime (see the module docstring).
_local: TLRUCache = TLRUCache(maxsize=settings.AUTH_LOCAL_CACHE_SIZE, ttu=_expires)
# Sync callers (pages, admin) run in threads, the subscribers in event loops; cachetools' caches
# are not thread-safe.
_local_lock = threading.Lock()
# Moves on every change message and every clear: a read that saw it move while its reply was in
# flight may have been overtaken by a change, so it is kept only briefly.
_generation = 0

# Each layer's counter, looked up once (`labels()` is a lock and a dict, per request).
_ANSWERED_BY = {layer: AUTH_CACHE.labels(layer) for layer in ("local", "redis", "db")}


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


def _user_store_script():
    return script(get_redis(), "user_store", SOURCES["user_store"])


def user_cache_store(user: User, *, pipe=None, fill: bool = False) -> dict[str, str]:
    """Write the Redis layer from `user`, a row as PostgreSQL has it, and forget the local copy (in
    every process: the script publishes the change).

    `fill` is for a cold miss (the row was read without knowing of any change in flight): it writes
    only over a hash with an older token version or none. Otherwise the row was read after a
    change committed and is written unless the hash already has a newer version. Returns the hash
    as it stands afterwards. With `pipe`, the write joins that pipeline (the caller executes it) and
    the fields of `user` are returned."""
    fields = user_hash_fields(user)
    args = [USER_HASH_TTL_SECONDS, "fill" if fill else "store", fields["ver"], changes_channel(), str(user.pk)]
    for name, value in fields.items():
        args += [name, value]
    user_store = _user_store_script()
    if pipe is not None:
        script_queue(pipe, user_store, keys=[user_hash_key(user.pk)], args=args)
        local_forget(str(user.pk))
        return fields
    reply = user_store(keys=[user_hash_key(user.pk)], args=args)
    local_forget(str(user.pk))
    if not reply:
        return fields
    return dict(zip(reply[::2], reply[1::2], strict=True))


def user_cache_drop(user_id: object) -> None:
    """Delete the Redis layer of a user who is gone, and forget the local copy in every process."""
    _user_store_script()(keys=[user_hash_key(user_id)], args=[0, "drop", 0, changes_channel(), str(user_id)],
                         client=get_redis())
    local_forget(str(user_id))


def user_cache_refresh(user_id: object) -> None:
    """Write the Redis layer from the user's committed row (after a save or a revocation), or drop
    it if the user is gone. One query."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        user_cache_drop(user_id)
    else:
        user_cache_store(user)


def local_forget(user_id: str) -> None:
    global _generation
    with _local_lock:
        _local.pop(user_id, None)
        _generation += 1


def local_clear() -> None:
    global _generation
    with _local_lock:
        _local.clear()
        _generation += 1


def _normalise_id(user_id: str) -> str | None:
    try:
        return str(uuid.UUID(user_id))
    except (ValueError, TypeError, AttributeError):
        return None


def _load_cold(user_id: str) -> CurrentUser | None:
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return None
    _ANSWERED_BY["db"].inc()
    return _from_hash(user_id, user_cache_store(user, fill=True))


def _local_get(user_id: str) -> CurrentUser | None:
    with _local_lock:
        entry = _local.get(user_id)
    return entry[0] if entry is not None else None


def _local_put(user: CurrentUser, *, long_since: int | None = None) -> None:
    """Keep `user` for the short TTL; for the long one if `long_since` (the generation read before
    the user was fetched) is still current: no message arrived, nor a clear, in between."""
    with _local_lock:
        long = long_since is not None and long_since == _generation
        ttl = settings.AUTH_LOCAL_CACHE_LONG_TTL_SECONDS if long else settings.AUTH_LOCAL_CACHE_TTL_SECONDS
        _local[user.id] = (user, ttl)


async def get_current_user(user_id: str) -> CurrentUser | None:
    """The user with this id from the cheapest layer that has it; None if no such user."""
    subscriber = _subscriber()
    # The local cache is keyed by the canonical form of the id: a hit on the id as given is one
    # (and skips parsing it again, a UUID per request).
    if type(user_id) is str and (user := _local_get(user_id)) is not None:
        _ANSWERED_BY["local"].inc()
        return user
    user_id = _normalise_id(user_id)
    if user_id is None:
        return None
    if (user := _local_get(user_id)) is not None:
        _ANSWERED_BY["local"].inc()
        return user
    # Read before the fetch (a plain read of an int: the put compares it under the lock).
    since = _generation if subscriber is not None and subscriber.subscribed else None
    data = await get_async_redis().hgetall(user_hash_key(user_id))
    if "ver" in data:
        _ANSWERED_BY["redis"].inc()
        user = _from_hash(user_id, data)
    else:
        user = await orm(_load_cold, user_id)
    if user is not None:
        # A loss of the subscription meanwhile cleared the cache, which moved the generation.
        _local_put(user, long_since=since)
    return user


def get_current_user_sync(user_id: str) -> CurrentUser | None:
    """The same lookup for sync code (pages, management commands): no subscriber, so what it
    reads is kept for the short TTL only."""
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


# --- The change channel's subscriber -------------------------------------------------------------

_subscribers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ChangeSubscriber]" = weakref.WeakKeyDictionary()


def _subscriber() -> "ChangeSubscriber | None":
    """The running loop's subscriber, started on first use (and again if it ever ended); None when
    the long TTL is off (AUTH_LOCAL_CACHE_LONG_TTL_SECONDS not above the short one)."""
    if settings.AUTH_LOCAL_CACHE_LONG_TTL_SECONDS <= settings.AUTH_LOCAL_CACHE_TTL_SECONDS:
        return None
    loop = asyncio.get_running_loop()
    subscriber = _subscribers.get(loop)
    if subscriber is None or subscriber.task.done():
        subscriber = _subscribers[loop] = ChangeSubscriber(loop)
    return subscriber


class ChangeSubscriber:
    """One task per event loop, on a connection of its own (not from the shared pool: it is held
    for ever in subscribed mode): forgets each user id published on the change channel.

    `subscribed` is True only between the subscription's confirmation and the connection's loss;
    the local cache is cleared at both moments (module docstring). The connection is a plain one to
    REDIS_URL, whatever the app's client is: on Redis Cluster that is one node, which hears every
    PUBLISH of the cluster."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.subscribed = False
        self.subscriptions = 0  # subscriptions made since the start (one more after each loss)
        self.task = loop.create_task(self._run(), name="flashbid-user-changes")

    async def _run(self) -> None:
        # RESP2: every reply, the subscription's confirmation and each message arrive in order as
        # plain arrays (redis-py 8 speaks RESP3 by default, where they are push frames that a bare
        # read hands to a handler instead of returning them).
        pool = aioredis.ConnectionPool.from_url(
            settings.REDIS_URL, decode_responses=True, client_name=SUBSCRIBER_CLIENT_NAME, protocol=2,
            socket_connect_timeout=5, socket_timeout=5)
        delay = SUBSCRIBER_RETRY_SECONDS[0]
        while True:
            connection = pool.make_connection()
            try:
                await self._listen(connection)
            except (RedisError, OSError) as exc:
                logger.warning("user cache: no change channel (%s); local entries live %s s until it is back",
                               exc, settings.AUTH_LOCAL_CACHE_TTL_SECONDS)
            except Exception:
                logger.exception("user cache: the change channel's subscriber failed; subscribing again")
            finally:
                if self.subscribed:
                    delay = SUBSCRIBER_RETRY_SECONDS[0]  # it had worked: start again from the shortest wait
                self._lost()
                await connection.disconnect(nowait=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SUBSCRIBER_RETRY_SECONDS[1])

    async def _listen(self, connection) -> None:
        await connection.connect()
        await connection.send_command("SUBSCRIBE", changes_channel())
        reply = await connection.read_response(timeout=5)
        if not reply or reply[0] != "subscribe":
            raise ConnectionError(f"unexpected answer to SUBSCRIBE: {reply!r}")
        local_clear()  # whatever was published before now may have been missed
        self.subscribed = True
        self.subscriptions += 1
        awaiting_pong = False
        while True:
            message = await connection.read_response(timeout=SUBSCRIBER_PING_SECONDS)
            if message is None:
                if awaiting_pong:
                    raise TimeoutError(f"no answer to a ping within {SUBSCRIBER_PING_SECONDS} s")
                await connection.send_command("PING")
                awaiting_pong = True
                continue
            awaiting_pong = False  # anything that arrives proves the connection alive
            if message[0] == "message":
                local_forget(message[2])

    def _lost(self) -> None:
        if self.subscribed:
            self.subscribed = False
            local_clear()  # what is published from now on is not heard
