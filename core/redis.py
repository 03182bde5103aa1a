"""Redis clients shared by the process: one sync client, one async client per event loop, each a
plain client or, with settings.REDIS_CLUSTER, redis-py's cluster client.

Async clients are bound to the loop that created them (daphne has one loop per process; tests
and management commands may run several), so they are kept per loop.

On a cluster every command is routed by its key's slot: a script (EVALSHA) to the shard of its
first key, a pipeline's commands to their shards. What the engine asks of the keys keeps that
valid: every key of a session shares the hash tag {<session_id>} (session_key), so its scripts and
MULTI blocks stay within one slot; whatever touches several sessions is a pipeline without MULTI
(`pipeline(transaction=False)`) or one call per session. Scripts are loaded on every primary when a
node answers NOSCRIPT (redis-py's Script on a cluster client: SCRIPT LOAD goes to every primary).
"""

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis | aioredis.RedisCluster]" = (
    weakref.WeakKeyDictionary()
)


class _AsyncCluster(aioredis.RedisCluster):
    """redis-py's async cluster client, made to behave like the plain client of the bid path:

    - a command waits for one of `in_flight` slots instead of failing: past its `max_connections`
      a node's pool raises MaxConnectionsError rather than wait; with at most `in_flight` commands
      under way (each uses one connection of one node) no node's pool runs out. Pipelines are not
      counted: they are few (the broadcaster's, one per tick), and the pools keep headroom for them;
    - no command is sent twice: the cluster client retries a command whose connection failed,
      which may have run already (a bid accepted, then refused as not higher on the retry). A
      connection error is answered (503, the client's retry is its own) and the next command
      finds the topology again (MOVED and ASK are still followed: the command had not run);
    - the client is initialized (cluster topology) before a command starts: in redis-py 8.1
      commands racing on a fresh or re-initializing client could write to a transport closed
      under them while connecting, a TypeError from asyncio, taken here for the connection error
      it is (the command was not sent)."""

    def __init__(self, *args, in_flight: int, **kwargs):
        super().__init__(*args, retry=Retry(NoBackoff(), 0), **kwargs)
        self._in_flight = asyncio.Semaphore(in_flight)

    async def execute_command(self, *args, **kwargs):
        await self.initialize()  # at once when initialized; else one initialization, the others wait
        async with self._in_flight:
            try:
                return await super().execute_command(*args, **kwargs)
            except TypeError as exc:
                if not _closed_transport(exc):
                    raise
                raise redis.ConnectionError("the connection was closed while it was being opened") from exc


def _closed_transport(exc: TypeError) -> bool:
    """Whether the TypeError came from asyncio writing to a transport closed under it."""
    frame = exc.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    return frame.tb_frame.f_code.co_filename.endswith(("selector_events.py", "streams.py"))


# redis-py 8 turns on maintenance notifications ("auto": Redis Enterprise and Redis Cloud announce
# planned moves of a shard), and with them on its async pools skip their check of a connection
# before handing it out (that Redis has not closed it, that nothing unread is on it): after a Redis
# restart every pooled connection then failed its next command, a 503 to a bidder each. Our Redis
# sends no such notifications; the check is worth more. (The sync pools' check of a closed socket
# raises and reconnects either way; off there too, for the same check of unread data.)
_CHECKED_CONNECTIONS = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def redis_client_new(*, timeout: float = 10, **options) -> redis.Redis | redis.RedisCluster:
    """A new sync client of the engine's Redis (plain or cluster, as configured)."""
    # (The cluster client is left as redis-py makes it: it hands its node connections out unchecked.)
    cls, checked = (redis.RedisCluster, {}) if settings.REDIS_CLUSTER else (redis.Redis, _CHECKED_CONNECTIONS)
    return cls.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=timeout, **checked, **options)


@cache
def get_redis() -> redis.Redis | redis.RedisCluster:
    return redis_client_new(health_check_interval=30)


def get_async_redis() -> aioredis.Redis | aioredis.RedisCluster:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        if settings.REDIS_CLUSTER:
            # At most REDIS_MAX_CONNECTIONS commands under way (the others wait), so no node's
            # pool needs more than that, and a little headroom for the pipelines.
            client = _AsyncCluster.from_url(
                settings.REDIS_URL,
                decode_responses=True,
                in_flight=settings.REDIS_MAX_CONNECTIONS,
                max_connections=settings.REDIS_MAX_CONNECTIONS + 16,
                health_check_interval=30,
                socket_timeout=10,
            )
        else:
            # A blocking pool: a burst of requests waits for a free connection instead of failing.
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL,
                decode_responses=True,
                max_connections=settings.REDIS_MAX_CONNECTIONS,
                timeout=10,
                health_check_interval=30,
                socket_timeout=10,
                **_CHECKED_CONNECTIONS,
            )
            client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


@receiver(setting_changed)
def _clients_forget(*, setting: str, **kwargs) -> None:
    """A test that points the engine at another Redis (override_settings) gets new clients."""
    if setting in ("REDIS_URL", "REDIS_CLUSTER"):
        get_redis.cache_clear()
        _async_clients.clear()


def key(*parts: object) -> str:
    """A key outside any session: fb:user:<id>, fb:login:..."""
    return ":".join([settings.REDIS_KEY_PREFIX, *map(str, parts)])


def session_key(session_id: object, name: str) -> str:
    """A key of one session. Every key of a session shares the hash tag {<session_id>} so that a
    script or a MULTI touching several of them stays valid on Redis Cluster (one slot)."""
    return f"{settings.REDIS_KEY_PREFIX}:{{{session_id}}}:{name}"
