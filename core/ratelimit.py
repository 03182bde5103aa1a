"""Rate-limit windows for everything but the bid (the bid script keeps its own): moving windows in
Redis from the `limits` library, for async code (the API) and sync code (Django's pages and admin).

A rate is a string in the library's notation ("10 per 15 minutes"), read from settings on every
call; an empty rate means no limit. A window's key is the limit's name and the identifiers given,
under `<REDIS_KEY_PREFIX>:limits`. One round trip per check or hit. On a Redis Cluster (one key
per window, so every script of the library stays in one slot) the library keeps clients of its own."""

import asyncio
import ipaddress
import math
import time
import weakref
from functools import cache, lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from limits import RateLimitItem, parse
from limits.aio.storage import RedisClusterStorage as AsyncRedisClusterStorage
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindowRateLimiter
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from core.redis import get_async_redis, get_redis

# One limiter per event loop, over that loop's pool (core.redis): async connections are bound to
# the loop that opened them.
_async_limiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncMovingWindowRateLimiter]" = (
    weakref.WeakKeyDictionary()
)


def _key_prefix() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:limits"


def _cluster_storage_uri(scheme: str) -> tuple[str, dict]:
    """The library's URI of the engine's cluster (its own client: the library builds one from a URI
    only), and the options that URI cannot carry."""
    url = urlsplit(settings.REDIS_URL)
    return f"{scheme}://{url.netloc}", ({"ssl": True} if url.scheme == "rediss" else {})


def _async_limiter() -> AsyncMovingWindowRateLimiter:
    loop = asyncio.get_running_loop()
    limiter = _async_limiters.get(loop)
    if limiter is None:
        if settings.REDIS_CLUSTER:
            uri, options = _cluster_storage_uri("async+redis+cluster")
            storage = AsyncRedisClusterStorage(uri, implementation="redispy", key_prefix=_key_prefix(), **options)
        else:
            storage = AsyncRedisStorage("async+redis://", implementation="redispy", key_prefix=_key_prefix(),
                                        connection_pool=get_async_redis().connection_pool)
        limiter = _async_limiters[loop] = AsyncMovingWindowRateLimiter(storage)
    return limiter


@cache
def _sync_limiter() -> MovingWindowRateLimiter:
    if settings.REDIS_CLUSTER:
        uri, options = _cluster_storage_uri("redis+cluster")
        storage = RedisClusterStorage(uri, key_prefix=_key_prefix(), **options)
    else:
        storage = RedisStorage("redis://", key_prefix=_key_prefix(), connection_pool=get_redis().connection_pool)
    return MovingWindowRateLimiter(storage)


@receiver(setting_changed)
def _limiters_forget(*, setting: str, **kwargs) -> None:
    """A test that points the engine at another Redis gets limiters over it."""
    if setting in ("REDIS_URL", "REDIS_CLUSTER"):
        _sync_limiter.cache_clear()
        _async_limiters.clear()


@lru_cache(maxsize=64)
def _item(rate: str) -> RateLimitItem:
    return parse(rate)


def _wait(stats: WindowStats) -> int | None:
    """None when the window has room for one more, else whole seconds until it has (at least 1)."""
    if stats.remaining >= 1:
        return None
    return max(1, math.ceil(stats.reset_time - time.time()))


async def limit_check(rate: str, name: str, *identifiers: str) -> int | None:
    """Seconds to wait if the window `name`/`identifiers` is full, else None. Counts nothing."""
    if not rate:
        return None
    return _wait(await _async_limiter().get_window_stats(_item(rate), name, *identifiers))


async def limit_hit(rate: str, name: str, *identifiers: str) -> int | None:
    """Count one event in the window; if it was already full, count nothing and return the seconds
    to wait, else None."""
    if not rate:
        return None
    limiter, item = _async_limiter(), _item(rate)
    if await limiter.hit(item, name, *identifiers):
        return None
    return _wait(await limiter.get_window_stats(item, name, *identifiers)) or 1


def limit_check_sync(rate: str, name: str, *identifiers: str) -> int | None:
    """limit_check for sync code."""
    if not rate:
        return None
    return _wait(_sync_limiter().get_window_stats(_item(rate), name, *identifiers))


def limit_hit_sync(rate: str, name: str, *identifiers: str) -> int | None:
    """limit_hit for sync code."""
    if not rate:
        return None
    limiter, item = _sync_limiter(), _item(rate)
    if limiter.hit(item, name, *identifiers):
        return None
    return _wait(limiter.get_window_stats(item, name, *identifiers)) or 1


def client_address(request: HttpRequest | None) -> str:
    """Who is asking, for the per-address limits: the connection's peer (REMOTE_ADDR), never a
    header the client wrote. Behind nginx the ASGI server takes the peer from nginx's X-Real-IP
    (deploy/docker-compose.yml: daphne --proxy-headers), which nginx sets from the TCP peer itself.
    An IPv6 client is its /64: one host usually holds a whole /64, and counting every address of
    it apart would give it 2^64 windows."""
    address = (request.META.get("REMOTE_ADDR") if request is not None else None) or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
