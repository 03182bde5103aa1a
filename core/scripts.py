"""The Lua script registry: each script registered once per Redis client.

redis-py's Script runs EVALSHA and falls back to EVAL when Redis answers NOSCRIPT (after a restart
or SCRIPT FLUSH), so no caller ever sees that; on a cluster client it loads the script on every
primary (SCRIPT LOAD goes to all of them) and EVALSHA goes to the shard of the script's first key.
The apps own their scripts (files next to their code) and hand the source in; this module only
keeps the registrations."""

import asyncio
import weakref
from pathlib import Path

import hiredis
from django.conf import settings
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

_scripts: dict[tuple[int, str], object] = {}
# Scripts loaded on a cluster for pipelines (script_queue): (id of the registered script).
_loaded_for_pipelines: set[int] = set()


def lua_sources(directory: Path, *names: str) -> dict[str, str]:
    """{name: source} of `<directory>/<name>.lua` for each name, read once at import."""
    return {name: (directory / f"{name}.lua").read_text() for name in names}


def script(client, name: str, source: str):
    """The registered script `name` (with `source`) for this client: one registration per client."""
    cache_key = (id(client), name)
    registered = _scripts.get(cache_key)
    if registered is None:
        registered = _scripts[cache_key] = client.register_script(source)
    return registered


def evalsha_command(registered, *, keys: list, args: list) -> tuple:
    """The raw EVALSHA of a registered script, to queue on a pipeline with `execute_command`.
    redis-py's cluster pipelines refuse `.evalsha()` (and so a Script called with client=pipe) but
    not the command itself, which they route by its first key like any other. No pipeline loads a
    script queued this way: a reply may be NoScriptError, for the caller to handle."""
    return ("EVALSHA", registered.sha, len(keys), *keys, *args)


def script_queue(pipe, registered, *, keys: list, args: list) -> None:
    """Queue a registered script on a sync pipeline, plain or cluster. A plain pipeline loads the
    script itself before it runs; for a cluster pipeline it is loaded on every primary here, once
    per process (a SCRIPT FLUSH afterwards makes the pipeline's replies NoScriptError)."""
    if isinstance(pipe, Pipeline):
        registered(keys=keys, args=args, client=pipe)
        return
    if id(registered) not in _loaded_for_pipelines:
        registered.registered_client.script_load(registered.script)
        _loaded_for_pipelines.add(id(registered))
    pipe.execute_command(*evalsha_command(registered, keys=keys, args=args))


# --- Batched script calls (the hot path's) --------------------------------------------------------
#
# Why our own code: redis-py has no automatic pipelining (commands issued by concurrent tasks go
# out one by one, each with its own write, read and wake-up of Redis). Under load a web process
# has tens of requests in flight; sent as one pipeline (no MULTI: each script stays atomic on its
# own, nothing else is shared) their scripts cost one write, one Redis wake-up and one read.
# Measured on this box (docs/PERFORMANCE.md, issue 18): 32 concurrent EVALSHAs cost 81 us of
# client CPU and 28 us of Redis CPU each one by one, 27 and 8 us batched. The batch is written and
# its replies read on a connection taken from the client's own pool and kept, packed by hiredis
# (`_Batcher._execute`): redis-py's pipeline packs in Python and keeps bookkeeping that cost more
# than the rest of a call, and its pool's acquire and release nearly as much again.

_batchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher]" = weakref.WeakKeyDictionary()


def batched(registered):
    """`registered` (an async client's registered script), called as it is (`keys=`, `args=`),
    except that calls made while settings.REDIS_SCRIPT_BATCH_IN_FLIGHT others are under way in
    this event loop wait for one of them to end, and then go to Redis together, as one pipeline
    (no MULTI). Under light load every call goes out at once, alone; under heavy load they go out
    in batches, each call with its own reply or exception, as if sent alone: a script's error is
    that call's; a connection error is every call's of the batch (none is sent again: the client
    retries nothing). NOSCRIPT (Redis restarted, SCRIPT FLUSH: the script did not run) loads the
    script and sends those calls once more. On a cluster client, calls go one by one (a cluster
    pipeline splits by node and may resend)."""
    client = registered.registered_client
    in_flight = settings.REDIS_SCRIPT_BATCH_IN_FLIGHT
    if isinstance(client, AsyncRedisCluster) or in_flight < 1:
        return registered

    async def call(*, keys: list, args: list):
        loop = asyncio.get_running_loop()
        batcher = _batchers.get(loop)
        if batcher is None or batcher.client is not client:
            if batcher is not None:  # another client now (tests): what the old one kept goes back
                batcher.connections_release()
            batcher = _batchers[loop] = _Batcher(loop, client)
        if batcher.in_flight >= in_flight:
            return await batcher.queue(registered, keys, args)
        batcher.in_flight += 1
        try:
            (reply,) = await batcher.run([(registered, keys, args)])
        finally:
            batcher.ended()
        if isinstance(reply, Exception):
            raise reply
        return reply

    return call


class _Batcher:
    """The script calls of one event loop, for one client: how many are under way, and those
    waiting to go out together."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client):
        self.loop, self.client = loop, client
        self.in_flight = 0
        self._queued: list[tuple[object, list, list, asyncio.Future]] = []
        self._sending: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak ones)
        # Connections taken from the client's pool and kept between batches, one per batch under
        # way; a connection goes back to the pool only after an error or a cancel, or when the
        # batcher is replaced. The pool's get_connection and release cost ~40 us of CPU a batch on
        # top of the batch's own ~45 (its condition, timeout and lock, redis-py's observability
        # hooks; ad hoc, uvloop, a PING a batch): at moderate load every batch is one bid
        # (docs/PERFORMANCE.md, session 11).
        self._idle: list = []

    def queue(self, registered, keys: list, args: list) -> asyncio.Future:
        future = self.loop.create_future()
        self._queued.append((registered, keys, args, future))
        return future

    def ended(self) -> None:
        """A call or a batch is no longer under way: the calls waiting go out, as one batch."""
        self.in_flight -= 1
        # A caller cancelled before its call went out (its client went away) is not sent.
        batch = [call for call in self._queued if not call[3].cancelled()]
        self._queued = []
        if batch:
            self.in_flight += 1
            task = self.loop.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list) -> None:
        try:
            replies = await self.run(batch)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self.ended()
        for (*_, future), reply in zip(batch, replies, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def run(self, batch: list) -> list:
        """One reply (or the exception of a refused command) per call (registered, keys, args, ...)
        of `batch`, in order; calls that found their script gone (NOSCRIPT: they did not run) are
        sent once more, in the same write as the loading of their scripts."""
        replies = await self._execute(batch)
        lost = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            scripts = [registered.script for registered in {id(batch[n][0]): batch[n][0] for n in lost}.values()]
            try:
                again = await self._execute([batch[n] for n in lost], loads=scripts)
            except Exception as exc:  # noqa: BLE001 (the lost calls' error; the others ran and keep their replies)
                again = [exc] * len(lost)
            for n, reply in zip(lost, again, strict=True):
                replies[n] = reply
        return replies

    async def _execute(self, batch: list, loads: list[str] = ()) -> list:
        """The calls' EVALSHAs in one write on one connection, then their replies read in order:
        what redis-py's pipeline does (and its plain command for a batch of one), less its Python
        packing and bookkeeping, which cost more than the rest of the call (CPU per call in a batch
        of 16: 31-39 us through the pipeline, 11-15 us this way; packing alone: 14.5 us in Python,
        1.5 us in hiredis, which redis-py's async client does not use). The connection is one this
        batcher kept from an earlier batch, checked first, or a new one from the pool; it is kept
        for the next batch, and given back to the pool (disconnected) only after an error or a
        cancel. `loads`: scripts loaded (SCRIPT LOAD) ahead of the calls, in the same write, on the
        same connection (not the pool's: after a restart its other connections may be stale)."""
        packed = b"".join([*(hiredis.pack_command(("SCRIPT", "LOAD", source)) for source in loads),
                           *(hiredis.pack_command(evalsha_command(registered, keys=keys, args=args))
                             for registered, keys, args, *_ in batch)])
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else await self.client.connection_pool.get_connection()
        try:
            if reused:
                # The checks the pool makes as it takes a connection back and hands it out: one
                # Redis closed (a restart), or with data on it that nobody asked for, is opened anew
                # (the second check runs with the pool's maintenance notifications off: core.redis).
                if connection.should_reconnect():
                    await connection.disconnect()
                await self.client.connection_pool.ensure_connection(connection)
            await connection.send_packed_command(packed)
            for _ in loads:
                await connection.read_response()  # the script's SHA (a refusal is raised: these calls fail)
            replies = []
            for _ in batch:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # that call's refusal; the next replies still come
                    replies.append(exc)
        except BaseException:
            # A reply left unread would be taken for the next command's: the connection goes (as
            # redis-py's own send and read do on an error), back to the pool, disconnected.
            try:
                await connection.disconnect(nowait=True)
            finally:
                self._release(connection)
            raise
        self._idle.append(connection)
        return replies

    def connections_release(self) -> None:
        """Give the kept connections back to the pool (the batcher is being replaced)."""
        while self._idle:
            self._release(self._idle.pop())

    def _release(self, connection) -> None:
        """Give a connection back to the pool. A cancel must not cut the release short (the pool
        would lose the connection for good), as redis-py's pipeline shields its own. Run eagerly
        it is done at once, unless the pool's lock is held."""
        releasing = asyncio.eager_task_factory(self.loop, self.client.connection_pool.release(connection))
        if not releasing.done():
            self._sending.add(releasing)
            releasing.add_done_callback(self._sending.discard)
