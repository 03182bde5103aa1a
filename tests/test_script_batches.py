"""Batched script calls (core.scripts.batched, the bid path's EVALSHAs) against the real Redis:
calls made while one is under way go out together as one pipeline, each with its own reply or
error, each run exactly once; a flushed script is loaded again (one that cannot be fails only its
own calls); a caller gone before its call went out is not sent; a connection error reaches every
call of a batch; the connection is kept between calls, checked before each, and given back to the
pool after a failure or when the batcher is replaced."""

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from core.redis import get_async_redis, get_redis
from core.scripts import batched
from tests import processes

# Counts its runs per key; refuses when asked to.
SOURCE = """
redis.call('INCR', KEYS[1])
if ARGV[1] == 'refuse' then return redis.error_reply('REFUSED asked to') end
return ARGV[1]
"""


async def test_calls_made_meanwhile_go_out_together_each_with_its_own_reply(started):
    # On a Redis of its own: its read counter is server-wide, and the suite's Redis serves the other
    # test process (deploy/test.sh runs two) at the same time.
    port = processes.free_port()
    started(processes.redis_server, port)
    client = aioredis.Redis(port=port, decode_responses=True)
    plain = redis.Redis(port=port)
    call = batched(client.register_script(SOURCE))
    counter = f"test:batches:{uuid.uuid4()}"
    before = plain.info("stats")["total_reads_processed"]
    try:
        replies = await asyncio.gather(*(call(keys=[counter], args=["refuse" if n == 7 else f"r{n}"])
                                         for n in range(50)), return_exceptions=True)
    finally:
        await client.aclose()
    reads = plain.info("stats")["total_reads_processed"] - before - 1  # less the INFO that reads it
    assert [r for n, r in enumerate(replies) if n != 7] == [f"r{n}" for n in range(50) if n != 7]
    assert isinstance(replies[7], redis.ResponseError) and "asked to" in str(replies[7])
    assert int(plain.get(counter)) == 50  # every call ran, once
    # The first call went alone; the 49 made while it was under way went as one pipeline (which
    # Redis may read in a few pieces). One by one (REDIS_SCRIPT_BATCH_IN_FLIGHT=0) they took 300.
    assert reads <= 15, reads


async def test_a_script_flushed_from_redis_is_loaded_again_and_each_call_runs_once(started):
    # On a Redis of its own: the flush empties the whole server's script cache, and a test of the
    # other test process that counts a request's commands would see the app load its scripts again.
    port = processes.free_port()
    started(processes.redis_server, port)
    client = aioredis.Redis(port=port, decode_responses=True)
    plain = redis.Redis(port=port, decode_responses=True)
    call = batched(client.register_script(SOURCE))
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        assert await call(keys=[counter], args=["warm"]) == "warm"
        plain.script_flush()
        replies = await asyncio.gather(*(call(keys=[counter], args=[f"r{n}"]) for n in range(20)))
    finally:
        await client.aclose()
    assert replies == [f"r{n}" for n in range(20)]
    assert int(plain.get(counter)) == 21


async def test_a_caller_gone_before_its_call_went_out_is_not_sent():
    call = batched(get_async_redis().register_script(SOURCE))
    first, second = f"test:batches:{uuid.uuid4()}", f"test:batches:{uuid.uuid4()}"
    await call(keys=[first], args=["warm"])  # the script is loaded, the connection open
    under_way = asyncio.create_task(call(keys=[first], args=["a"]))
    waiting = asyncio.create_task(call(keys=[second], args=["b"]))
    await asyncio.sleep(0)  # the first is sent; the second waits behind it
    waiting.cancel()
    assert await under_way == "a"
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.05)
    assert get_redis().get(second) is None
    assert int(get_redis().get(first)) == 2


async def test_a_connection_error_reaches_every_call_of_a_batch():
    # No retries, as the app's clients (core.redis): nothing is sent twice.
    unreachable = aioredis.Redis(host="127.0.0.1", port=processes.free_port(), socket_connect_timeout=1,
                                 retry=Retry(NoBackoff(), 0))
    call = batched(unreachable.register_script(SOURCE))
    try:
        replies = await asyncio.gather(*(call(keys=["k"], args=[f"r{n}"]) for n in range(10)),
                                       return_exceptions=True)
    finally:
        await unreachable.aclose()
    assert all(isinstance(r, redis.ConnectionError) for r in replies), replies


async def test_a_call_cancelled_while_its_reply_is_awaited_leaves_nothing_for_the_next_call(started):
    # The reply of a cancelled call must not be read as the next call's (core.scripts writes the
    # commands and reads the replies itself), nor may the connection be lost to the pool. A Redis
    # of its own, paused (CLIENT PAUSE) so that the reply cannot come before the cancel.
    port = processes.free_port()
    started(processes.redis_server, port)
    client = aioredis.Redis(port=port, decode_responses=True, max_connections=1)
    plain = redis.Redis(port=port, decode_responses=True)
    call = batched(client.register_script(SOURCE))
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        assert await call(keys=[counter], args=["warm"]) == "warm"
        plain.client_pause(1000)
        under_way = asyncio.create_task(call(keys=[counter], args=["cancelled"]))
        await asyncio.sleep(0.3)  # written long since; Redis answers nothing before the pause ends
        under_way.cancel()
        with pytest.raises(asyncio.CancelledError):
            await under_way
        # The pool's one connection is back: the next call gets it, and its own reply.
        assert await asyncio.wait_for(call(keys=[counter], args=["next"]), 10) == "next"
        # Nothing was sent twice. (Whether the cancelled call ran is Redis's affair: its connection
        # closed while the command waited behind the pause, and Redis drops a gone client's input.)
        assert int(plain.get(counter)) in (2, 3)
    finally:
        await client.aclose()


class _CountingPool(aioredis.BlockingConnectionPool):
    """The app's kind of pool (core.redis: blocking, maintenance notifications off, so that it
    checks a connection before handing it out), counting what it hands out and takes back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, maint_notifications_config=MaintNotificationsConfig(enabled=False), **kwargs)
        self.acquired = self.released = 0

    async def get_connection(self, *args, **kwargs):
        self.acquired += 1
        return await super().get_connection(*args, **kwargs)

    async def release(self, connection):
        self.released += 1
        await super().release(connection)


async def test_calls_one_after_another_keep_one_connection_out_of_the_pool(started):
    # The pool's acquire and release cost about as much CPU as the batch itself: the batcher keeps
    # the connection it took, for every later call.
    port = processes.free_port()
    started(processes.redis_server, port)
    pool = _CountingPool(port=port, decode_responses=True, max_connections=4, timeout=5)
    client = aioredis.Redis(connection_pool=pool)
    call = batched(client.register_script(SOURCE))
    redis.Redis(port=port).script_load(SOURCE)  # no NOSCRIPT, whose load takes a connection of its own
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        assert [await call(keys=[counter], args=[f"r{n}"]) for n in range(30)] == [f"r{n}" for n in range(30)]
        assert (pool.acquired, pool.released) == (1, 0)
        # The rest of the client still has the pool's other connections.
        assert await asyncio.wait_for(asyncio.gather(*(client.get(counter) for _ in range(3))), 5) == ["30"] * 3
    finally:
        await client.aclose(close_connection_pool=True)  # a pool of the test's own


async def test_a_kept_connection_closed_by_redis_is_opened_again_before_the_next_call(started):
    # Redis restarted, or the connection killed: the next call must not fail on it (the pool checks
    # the connections it hands out, and so must the batcher the connection it kept).
    port = processes.free_port()
    started(processes.redis_server, port)
    pool = _CountingPool(port=port, decode_responses=True, max_connections=4, timeout=5)
    client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
    plain = redis.Redis(port=port, decode_responses=True)
    call = batched(client.register_script(SOURCE))
    plain.script_load(SOURCE)  # no NOSCRIPT, whose load takes a connection of its own
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        assert await call(keys=[counter], args=["warm"]) == "warm"
        assert plain.client_kill_filter(_type="normal", skipme=True) == 1
        await asyncio.sleep(0.2)  # the close reaches the client's side
        assert await call(keys=[counter], args=["after"]) == "after"
        assert int(plain.get(counter)) == 2
        assert (pool.acquired, pool.released) == (1, 0)
    finally:
        await client.aclose(close_connection_pool=True)  # a pool of the test's own


async def test_a_kept_connection_that_fails_goes_back_to_the_pool(started):
    # Redis away for a while: every call fails, none may keep a connection from the pool for good
    # (two would exhaust this pool; the app's waits for a free one, then fails every bid).
    port = processes.free_port()
    server = started(processes.redis_server, port)
    pool = _CountingPool(port=port, decode_responses=True, max_connections=2, timeout=2)
    client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
    call = batched(client.register_script(SOURCE))
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        assert await call(keys=[counter], args=["warm"]) == "warm"
        server.stop()
        for _ in range(5):
            with pytest.raises(redis.ConnectionError):
                await call(keys=[counter], args=["lost"])
        assert pool.acquired - pool.released == 0
        started(processes.redis_server, port)
        assert await asyncio.wait_for(call(keys=[counter], args=["back"]), 10) == "back"
    finally:
        await client.aclose(close_connection_pool=True)  # a pool of the test's own


async def test_a_batcher_replaced_for_another_client_gives_its_connection_back(started):
    # One batcher per event loop: calls through another client replace it (tests that point the
    # engine at another Redis do), and the connection the first one kept goes back to its pool.
    port = processes.free_port()
    started(processes.redis_server, port)
    redis.Redis(port=port).script_load(SOURCE)
    pools = [_CountingPool(port=port, decode_responses=True, max_connections=2, timeout=5) for _ in range(2)]
    clients = [aioredis.Redis(connection_pool=pool) for pool in pools]
    calls = [batched(client.register_script(SOURCE)) for client in clients]
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        assert await calls[0](keys=[counter], args=["first"]) == "first"
        assert await calls[1](keys=[counter], args=["second"]) == "second"
        assert [(pool.acquired, pool.released) for pool in pools] == [(1, 1), (1, 0)]
    finally:
        for client in clients:
            await client.aclose(close_connection_pool=True)


async def test_a_script_that_cannot_be_loaded_fails_its_own_calls_only(started):
    # In one batch, a call that ran keeps its reply when another call's script, lost (NOSCRIPT),
    # cannot be loaded again: a bid that Redis accepted is never answered with another call's error.
    port = processes.free_port()
    started(processes.redis_server, port)
    plain = redis.Redis(port=port, decode_responses=True)
    plain.script_load(SOURCE)
    client = aioredis.Redis(port=port, decode_responses=True)
    good = batched(client.register_script(SOURCE))
    broken = batched(client.register_script("return +"))  # not Lua: SCRIPT LOAD refuses it
    counter = f"test:batches:{uuid.uuid4()}"
    try:
        under_way = asyncio.create_task(good(keys=[counter], args=["first"]))
        await asyncio.sleep(0)  # the first is sent; the next two wait behind it and go out together
        replies = await asyncio.gather(good(keys=[counter], args=["ran"]), broken(keys=[counter], args=["x"]),
                                       return_exceptions=True)
        assert await under_way == "first"
    finally:
        await client.aclose()
    assert replies[0] == "ran"
    assert isinstance(replies[1], redis.ResponseError), replies
    assert int(plain.get(counter)) == 2
