"""The coalescing broadcaster: pushes a session's board to its WebSocket listeners when it changed,
at most once per BROADCAST_INTERVAL_MS per session, across every web process, never once per bid.

Each web process runs one ticker task per event loop (daphne has one), started when its first
socket joins a session and ended when its last socket leaves. For every session with listeners in
this process it asks Redis, every interval, `push_claim.lua` (one pipelined round trip for all due
sessions): has the board version moved since the last push, or has the session's end passed (by
Redis's clock) without its "ended" status being pushed? Redis answers for all processes at once,
so exactly one process wins a claim; it reads ONE board snapshot (top BOARD_SIZE, the selectors'
board script), does ONE group send (one PUBLISH with the pub/sub layer; every process relays it to
its own sockets), and records what it pushed with `push_confirm.lua`.

A claim has a lease (PUSH_LEASE_MS): if its process dies between claim and confirm, another
process pushes the same state when the lease runs out, so the last state still arrives (late, once
more); a process that publishes and confirms in time causes no duplicate. A publish that fails
releases the claim, and the next tick tries again.

Cost: the bid path is untouched (it already bumps the version). Per session with listeners: each
web process polls once per interval (a few HMGETs in Redis); the winner adds one board read, one
PUBLISH and one confirm per interval at most. Message shapes: leaderboard/frames.py.

The relay (the fan-out inside a process): sockets do not join the session's group themselves. The
first socket of a session in this event loop makes the broadcaster take ONE channel from the layer
for that session, join the session's group with it and start one relay task; the last socket's
leave ends the task and the membership. The relay receives each group message once (one
deserialization) and writes its pre-rendered text to every local socket of the session with one
ASGI send each, or under uvicorn one write of a frame built once (`BoardConsumer.relay`: the
version filter, the snapshot ordering and the shared frame live there).
Each send runs at once and never makes the relay wait on a client (`BoardConsumer.push`: a send
that waits on a slow client, as uvicorn's do, goes on as a task of its own; daphne's never waits),
so no socket is delayed behind a slow or dead one; a send that fails is logged and skips only that
socket. Per socket and push this is one filter check and one send, instead of a queue put, a
wake-up of the socket's dispatch loop, a new task and a deserialization. A channel per session
rather than per process: the layer hands a group message to its member channels without the
group's name, so a channel shared by sessions could not tell which sockets a message is for.
"""

import asyncio
import logging
import secrets
import weakref
from collections import Counter
from pathlib import Path

from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import NoScriptError, RedisError

from auctions import live, recovery
from auctions.rules import us_to_datetime
from core.db import orm
from core.exceptions import ApplicationError
from core.redis import get_async_redis, session_key
from core.scripts import evalsha_command, lua_sources, script
from leaderboard.frames import BOARD_SIZE, board_group, board_message, publish, status_message
from leaderboard.selectors import board_read, standings

logger = logging.getLogger(__name__)

SOURCES = lua_sources(Path(__file__).resolve().parent / "lua", "push_claim", "push_confirm")

# How long a claim may stay unconfirmed before another process may push the same state. Far above
# a normal claim-to-confirm time (milliseconds), short enough to keep a dead claimer's loss brief.
PUSH_LEASE_MS = 1_000
# The push hash outlives any listener by this much (it is rebuilt by the next claim anyway).
PUSH_KEY_TTL_MS = 7 * 24 * 3600 * 1000
# Sessions Redis does not know (deleted while watched) are asked about again this rarely.
UNKNOWN_RETRY_SECONDS = 5.0


def push_key(session_id: object) -> str:
    return session_key(session_id, "push")


class _Relay:
    """One session's sockets in this event loop and the layer channel relaying its group to them."""

    __slots__ = ("sockets", "channel", "task", "you_task", "you_again")

    def __init__(self) -> None:
        self.sockets: set = set()  # BoardConsumers (anything with `relay(event)`, `user`, `you(standing)`)
        self.channel: str | None = None  # set once the channel has joined the group
        self.task: asyncio.Task | None = None
        # The standings check of the signed-in sockets (`you` frames): one at a time; a board
        # pushed meanwhile asks for one more run.
        self.you_task: asyncio.Task | None = None
        self.you_again = False


class Broadcaster:
    """The ticker and the relay of one event loop. Not thread-safe: used only from its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._listeners: Counter[str] = Counter()
        self._due: dict[str, float] = {}  # session id -> loop time of its next claim attempt
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._relays: dict[str, _Relay] = {}
        # Serializes the layer joins and leaves of this loop's relays (only a session's first
        # socket and its last one do any: a join after a leave of the same session must not
        # overtake it, or the layer would end up unsubscribed with a socket waiting).
        self._membership = asyncio.Lock()

    async def join(self, session_id: str, socket) -> None:
        """`socket` (a BoardConsumer) receives `session_id`'s group messages from now on, through
        `socket.relay(event)`; when this returns, the relay is subscribed (a message published
        after it is relayed). Polled by the ticker as well (`listen`). Raises if the layer cannot
        subscribe, having undone everything."""
        relay = self._relays.get(session_id)
        if relay is None:
            relay = self._relays[session_id] = _Relay()
        relay.sockets.add(socket)
        self.listen(session_id)
        try:
            await self._sync_membership(session_id)
        except BaseException:
            await self.leave(session_id, socket)
            raise

    async def leave(self, session_id: str, socket) -> None:
        """Undoes `join` (the relay of the session ends with its last socket here)."""
        relay = self._relays.get(session_id)
        if relay is None or socket not in relay.sockets:
            return
        relay.sockets.discard(socket)
        self.unlisten(session_id)
        await self._sync_membership(session_id)

    async def _sync_membership(self, session_id: str) -> None:
        """Brings the session's relay in line with its sockets: joined with a running task while
        it has any, gone when it has none."""
        async with self._membership:
            relay = self._relays.get(session_id)
            if relay is None:
                return
            layer = get_channel_layer()
            if relay.sockets and relay.channel is None:
                channel = await layer.new_channel("board-relay.")
                task = self._loop.create_task(self._relay(session_id, relay, channel),
                                              name=f"board-relay {session_id}")
                try:
                    await layer.group_add(board_group(session_id), channel)
                except BaseException:
                    await self._stop(task)
                    raise
                relay.channel, relay.task = channel, task
            elif not relay.sockets:
                del self._relays[session_id]
                if relay.you_task is not None:
                    relay.you_task.cancel()
                if relay.channel is not None:
                    try:
                        await layer.group_discard(board_group(session_id), relay.channel)
                    finally:
                        await self._stop(relay.task)

    @staticmethod
    async def _stop(task: asyncio.Task) -> None:
        """Ends a relay task; the layer unsubscribes its channel when its receive() is cancelled."""
        await asyncio.sleep(0)  # a task cancelled before its first step would never reach receive()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _relay(self, session_id: str, relay: _Relay, channel: str) -> None:
        """Every message of the session's group, to every socket of the session here, in order;
        after a board, the signed-in sockets' standings (`you` frames)."""
        layer = get_channel_layer()
        while True:
            event = await layer.receive(channel)
            for socket in tuple(relay.sockets):  # a socket may leave meanwhile
                try:
                    socket.relay(event)
                except Exception:
                    logger.exception("board relay: a send to one socket failed")
            if "version" in event:
                self._you_check_soon(session_id, relay)

    def _you_check_soon(self, session_id: str, relay: _Relay) -> None:
        if relay.you_task is not None and not relay.you_task.done():
            relay.you_again = True
        elif any(socket.user is not None for socket in relay.sockets):
            relay.you_task = self._loop.create_task(self._you_check(session_id, relay),
                                                    name=f"board-you {session_id}")

    @staticmethod
    async def _you_check(session_id: str, relay: _Relay) -> None:
        """The standing of every signed-in bidder with a socket here, in ONE script call, and a
        `you` frame to those whose is_winning changed. Once per board push per process: the cost
        follows the pushes (at most one per BROADCAST_INTERVAL_MS), never the bids."""
        while True:
            relay.you_again = False
            signed_in = [socket for socket in tuple(relay.sockets) if socket.user is not None]
            if signed_in:
                try:
                    found = await standings(session_id=session_id,
                                            weights={socket.user.id: socket.user.weight for socket in signed_in})
                except (RedisError, ApplicationError, OSError) as exc:
                    logger.warning("board push: the standings of session %s failed (%s)", session_id, exc)
                    found = {}
                for socket in signed_in if found else ():
                    try:
                        socket.you(found[socket.user.id])
                    except Exception:
                        logger.exception("board push: a `you` frame to one socket failed")
            if not relay.you_again:
                return

    def listen(self, session_id: str) -> None:
        """A socket of this process watches `session_id`: the ticker polls it (`join` calls this)."""
        self._listeners[session_id] += 1
        if self._listeners[session_id] == 1:
            self._due[session_id] = self._loop.time()
            self._wake.set()
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name="board-broadcaster")

    def unlisten(self, session_id: str) -> None:
        """A socket of this process left; the session is no longer polled here once none is left."""
        if self._listeners[session_id] <= 1:
            self._listeners.pop(session_id, None)
            self._due.pop(session_id, None)
            self._wake.set()  # the ticker ends at once when nothing is left to poll
        else:
            self._listeners[session_id] -= 1

    async def _run(self) -> None:
        interval = settings.BROADCAST_INTERVAL_MS / 1000
        try:
            while self._listeners:
                now = self._loop.time()
                due = [sid for sid, at in self._due.items() if at <= now]
                if not due:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), min(self._due.values()) - now)
                    except TimeoutError:
                        pass
                    continue
                try:
                    await self._tick(due, interval)
                except Exception as exc:
                    # Redis down or slow (or a bug): sockets keep their last board; the ticker lives on.
                    if isinstance(exc, RedisError):
                        logger.warning("board broadcaster: %s; retrying in %.1f s", exc, interval)
                    else:
                        logger.exception("board broadcaster tick failed; retrying in %.1f s", interval)
                    for sid in due:
                        if sid in self._due:
                            self._due[sid] = self._loop.time() + interval
        finally:
            self._task = None

    async def _tick(self, due: list[str], interval: float) -> None:
        """Claim every due session in one pipelined round trip, then push those won, concurrently."""
        claim = script(get_async_redis(), "push_claim", SOURCES["push_claim"])
        tokens = {sid: secrets.token_hex(8) for sid in due}
        pipe = get_async_redis().pipeline(transaction=False)
        for sid in due:
            keys = live.session_keys(sid)
            # A raw EVALSHA: a registered Script would add a SCRIPT EXISTS round trip, and a cluster
            # pipeline (one batch per shard, sessions spread over them) accepts only the raw command.
            pipe.execute_command(*evalsha_command(
                claim, keys=[keys.params, keys.meta, push_key(sid)],
                args=[tokens[sid], settings.BROADCAST_INTERVAL_MS, PUSH_LEASE_MS, PUSH_KEY_TTL_MS]))
        replies = await pipe.execute(raise_on_error=False)
        now = self._loop.time()
        pushes, pushed, unloaded, failures = [], [], [], []
        script_lost = False
        for sid, reply in zip(due, replies, strict=True):
            retry_at = now + interval
            if isinstance(reply, NoScriptError):  # Redis restarted or SCRIPT FLUSH: load it, ask again
                script_lost, retry_at = True, now
            elif isinstance(reply, Exception):
                failures.append(reply)
            elif reply[0] == "claim":
                # Pushed even if this process's last socket for it left meanwhile: others wait on it.
                pushed.append(sid)
                pushes.append(self._push(sid, tokens[sid], board=reply[1] == 1, status=reply[2] == 1,
                                         now_us=int(reply[3]), end_us=reply[4]))
            elif reply[0] == "idle":
                pass
            elif reply[0] == "wait":
                retry_at = now + int(reply[1]) / 1000
            elif reply[1] == "no_params":  # the live state is not whole: restore it, ask again
                unloaded.append(sid)
                retry_at = now
            else:  # not_found
                retry_at = now + UNKNOWN_RETRY_SECONDS
            if sid in self._due:  # unless its last socket here left meanwhile
                self._due[sid] = retry_at
        outcomes = await asyncio.gather(*pushes, return_exceptions=True)
        for session_id, outcome in zip(pushed, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.error("board push for session %s failed", session_id, exc_info=outcome)
        if failures:
            logger.warning("board broadcaster: %d claim(s) failed (%s); retrying next interval",
                           len(failures), failures[0])
        if script_lost:
            await get_async_redis().script_load(SOURCES["push_claim"])
        for sid in unloaded:
            # Outside any request (orm hands the connection back); another process may be restoring it.
            await orm(recovery.live_state_ensure, session_id=sid)

    async def _push(self, session_id: str, token: str, *, board: bool, status: bool, now_us: int,
                    end_us: str) -> None:
        """Publish what the claim won, then confirm what was published (which ends the claim)."""
        pushed_version = ""
        pushed_end = ""
        try:
            if board:
                snapshot = await board_read(session_id=session_id, offset=0, count=BOARD_SIZE)
                await publish(session_id, board_message("board", snapshot), version=snapshot.version)
                pushed_version = str(snapshot.version)
            if status:
                await publish(session_id, status_message("ended", us_to_datetime(now_us)))
                pushed_end = end_us
        except (RedisError, ApplicationError, OSError) as exc:
            logger.warning("board push for session %s failed (%s); the next tick retries", session_id, exc)
        finally:
            confirm = script(get_async_redis(), "push_confirm", SOURCES["push_confirm"])
            await confirm(keys=[push_key(session_id)], args=[token, pushed_version, pushed_end])


_broadcasters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Broadcaster]" = weakref.WeakKeyDictionary()


def get_broadcaster() -> Broadcaster:
    """The broadcaster of the running event loop (one per loop, like the Redis clients)."""
    loop = asyncio.get_running_loop()
    broadcaster = _broadcasters.get(loop)
    if broadcaster is None:
        broadcaster = _broadcasters[loop] = Broadcaster(loop)
    return broadcaster
