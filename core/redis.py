"""Redis clients shared by the process: one sync client, one async client per event loop.

Async clients are bound to the loop that created them (daphne has one loop per process; tests
and management commands may run several), so they are kept per loop.
"""

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = (
    weakref.WeakKeyDictionary()
)


@cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, decode_responses=True, health_check_interval=30, socket_timeout=10
    )


def get_async_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # A blocking pool: a burst of requests waits for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=10,
            health_check_interval=30,
            socket_timeout=10,
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


def key(*parts: object) -> str:
    """A key outside any session: fb:user:<id>, fb:login:..."""
    return ":".join([settings.REDIS_KEY_PREFIX, *map(str, parts)])


def session_key(session_id: object, name: str) -> str:
    """A key of one session. Every key of a session shares the hash tag {<session_id>} so that a
    script touching several of them stays valid on Redis Cluster."""
    return f"{settings.REDIS_KEY_PREFIX}:{{{session_id}}}:{name}"
