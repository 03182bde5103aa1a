"""Keeping a session's live state in Redis whole, from PostgreSQL's durable record.

Redis can lose a session's state (a flush, a restart without AOF, a failover to an empty replica,
an eviction) or come back older than PostgreSQL (AOF `everysec` loses its last second while a
persist tick already committed some of those bids). Either way no bid may be accepted onto what is
left: every script refuses a state that is not whole (auctions.live), and the first reader restores
it here, once, under a per-session lock, while the others wait briefly or are told `recovering`.

A restore writes the ranking with the stored scores and tie order, prices, names and the highest
price from PostgreSQL; seq continues above everything PostgreSQL holds (a seq is never reused) and
the board version above everything Redis or the clock has seen (it never goes backwards).
"""

import asyncio
import logging
import secrets
import time

from django.conf import settings
from django.db.models import Max

from auctions import live, persistence
from auctions.models import Bid, BiddingSession, BidEvent, SessionStatus
from auctions.rules import to_us
from core.db import orm
from core.exceptions import ApplicationError, ErrorCode
from core.metrics import LIVE_STATE_RESTORES
from core.redis import get_redis, session_key

logger = logging.getLogger(__name__)

# A restore of 100,000 bidders takes a few seconds; the lock outlives it, and a restorer that died
# holds it no longer than this.
RESTORE_LOCK_SECONDS = 60
# How long a request waits for a restore under way before it answers 503 `recovering`.
RESTORE_WAIT_SECONDS = 2.0
# How long rebuild_leaderboard (or the persist tick's repair) waits for another restore to finish.
RESTORE_LOCK_WAIT_SECONDS = 30


def _lock(session_id, *, wait: float | None = None):
    return get_redis().lock(session_key(session_id, "restore"), timeout=RESTORE_LOCK_SECONDS,
                            blocking=wait is not None, blocking_timeout=wait)


def _pg_max_seq(session_id) -> int:
    """The largest seq PostgreSQL holds for the session: its bid log's (every Bid row is written
    with its BidEvent); one probe of the (session, seq) unique index."""
    return BidEvent.objects.filter(session_id=session_id).aggregate(m=Max("seq"))["m"] or 0


def _restore(session_id, *, reason: str) -> int | None:
    """Write the live state from PostgreSQL. Needs the session's restore lock. Returns the number of
    bidders restored, None if there is no such session (remembered briefly)."""
    session = BiddingSession.objects.filter(pk=session_id).first()
    if session is None:
        live.missing_remember(session_id)
        return None
    bids = list(Bid.objects.filter(session=session).select_related("bidder").only(
        "bidder_id", "bidder__username", "price", "score", "seq", "accepted_at"))
    names = {str(bid.bidder_id): bid.bidder.username for bid in bids}
    redis_seq, redis_version = live.counters(session.pk)
    now_us = live.redis_clock_us()
    was_closed = bool(get_redis().hget(live.session_keys(session.pk).params, "closed"))
    live.state_write(
        session, bids=bids, names=names,
        seq=max(redis_seq, _pg_max_seq(session.pk)),
        # Above any version a reader may have seen: Redis's own if it kept one, else the clock's
        # microseconds (a version grows by one per bid, far slower than the clock).
        version=max(redis_version + 1, now_us),
        epoch=secrets.token_hex(8),
        # Settlement may have closed it already; and a session past its end takes no bid even if
        # a clock steps back. An admin who moves the end into the future reopens it (params_store).
        closed=was_closed or now_us >= to_us(session.end_time) or session.status == SessionStatus.SETTLED,
    )
    LIVE_STATE_RESTORES.labels(reason).inc()
    logger.warning("restored the live state of session %s from PostgreSQL (%s): %d bidder(s)",
                   session.pk, reason, len(bids))
    return len(bids)


def live_state_ensure(*, session_id, reason: str = "not_whole") -> str:
    """Make the session's live state whole if it is not, unless another process is doing it.

    Returns "whole" (nothing to do), "restored", "busy" (another restore holds the lock) or
    "missing" (no such session). Cheap when whole: two Redis reads, no SQL."""
    if live.is_whole(session_id):
        return "whole"
    lock = _lock(session_id)
    if not lock.acquire():
        return "busy"
    try:
        if live.is_whole(session_id):
            return "whole"
        return "missing" if _restore(session_id, reason=reason) is None else "restored"
    finally:
        _release(lock)


def known_sessions_rebuild() -> bool:
    """Refill the set of known session ids from PostgreSQL (one query), unless another process is
    doing it. True once the set is back (this call refilled it, or found it refilled). Adds only
    (SADD): ids added meanwhile by new sessions stay."""
    lock = get_redis().lock(live.KNOWN_SESSIONS_KEY + ":rebuild", timeout=RESTORE_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return False
    try:
        # Every request that found the set not whole comes here; all but the first find it refilled
        # (a chaos run's FLUSHALL, 200 bidders resuming at once, had cost 62 rebuilds in a row).
        if live.known_is_whole():
            return True
        ids = [str(pk) for pk in BiddingSession.objects.values_list("pk", flat=True)]
        for start in range(0, len(ids), 10_000):
            live.known_add(*ids[start:start + 10_000])
        live.known_whole()  # last: the set answers only once every id is in it
        logger.warning("rebuilt the set of known session ids from PostgreSQL: %d session(s)", len(ids))
        return True
    finally:
        _release(lock)


def _recovering(detail: str = "The session's live state is being restored; try again in a moment."):
    return ApplicationError(ErrorCode.RECOVERING, detail, retry_after=1)


async def session_known(session_id) -> bool:
    """Whether the session exists, answered from Redis (no SQL), except once after Redis lost the
    set of known ids: then one query refills it for every process."""
    deadline = time.monotonic() + RESTORE_WAIT_SECONDS
    while (known := await live.known_check(session_id)) is None:
        if not await orm(known_sessions_rebuild):
            if time.monotonic() >= deadline:
                raise _recovering("The session index is being restored; try again in a moment.")
            await asyncio.sleep(0.05)
    return known


async def live_state_await(session_id) -> None:
    """For request paths that found the state not whole: restore it, or wait for the restore under
    way. Raises `not_found` for an id PostgreSQL does not hold (known without SQL), `recovering`
    (with Retry-After) when a restore takes longer than RESTORE_WAIT_SECONDS."""
    if not await session_known(session_id):
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such session.")
    deadline = time.monotonic() + RESTORE_WAIT_SECONDS
    while await orm(live_state_ensure, session_id=session_id) == "busy":
        if time.monotonic() >= deadline:
            raise _recovering()
        await asyncio.sleep(0.05)


async def run_when_whole(script, *, keys: list, args: list, session_id) -> list:
    """Run one of the live state's scripts (auctions.live). One that answers "no_params" (the state
    is not whole: first use, or Redis lost part of it) runs again once the state is restored."""
    reply = await script(keys=keys, args=args)
    if reply[0] == "err" and reply[1] == "no_params":
        await live_state_await(session_id)
        reply = await script(keys=keys, args=args)
        if reply[0] == "err" and reply[1] == "no_params":  # lost again meanwhile
            raise _recovering()
    return reply


def live_state_restore(*, session_id, reason: str = "rebuild") -> int:
    """Hold the session (bids wait or get `recovering`), drain its stream into PostgreSQL, then
    restore the live state from PostgreSQL. Never lowers seq or version. Returns the number of
    bidders restored. For `rebuild_leaderboard` and for a Redis found older than PostgreSQL."""
    if not BiddingSession.objects.filter(pk=session_id).exists():
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such session.")
    lock = _lock(session_id, wait=RESTORE_LOCK_WAIT_SECONDS)
    if not lock.acquire():
        raise ApplicationError(ErrorCode.RECOVERING, "Another restore of this session is under way.", retry_after=5)
    try:
        live.wholeness_break(session_id)
        persistence.session_drain_completely(session_id=str(session_id))
        return _restore(session_id, reason=reason) or 0
    finally:
        _release(lock)


def live_states_check(session_ids: list[str], *, behind: set[str] = frozenset()) -> list[str]:
    """After a persist tick drained these sessions: restore a state that is not whole (even with
    no reader), and repair one that is older than PostgreSQL (Redis lost writes: an alert).
    `behind`: sessions the tick already found older (persistence.PersistReport.behind)."""
    restored = []
    for session_id in session_ids:
        if not live.is_whole(session_id):
            if live_state_ensure(session_id=session_id) == "restored":
                restored.append(session_id)
            continue
        redis_seq, _ = live.counters(session_id)
        pg_seq = _pg_max_seq(session_id)
        if session_id in behind or redis_seq < pg_seq:
            logger.error("session %s: Redis's seq %d was below PostgreSQL's %d: Redis lost writes; restoring "
                         "its live state from PostgreSQL", session_id, redis_seq, pg_seq)
            try:
                live_state_restore(session_id=session_id, reason="behind_postgres")
            except ApplicationError as exc:  # another restore holds it, or the session is gone: next tick
                logger.warning("session %s: %s", session_id, exc.detail)
                continue
            restored.append(session_id)
    return restored


def _release(lock) -> None:
    try:
        lock.release()
    except Exception:  # expired (a restore slower than the timeout): harmless, the state is whole or not
        logger.warning("restore lock expired before it was released")


def persist_tick(*, session_ids: list[str] | None = None, share_out=None, budget_seconds: float | None = None) -> dict:
    """A tick of the write-behind: persist the streams of `session_ids` (default: every open
    session), each under its drain lease, then make sure the live state of each session drained
    here is whole and not older than what PostgreSQL now holds.

    With `share_out` (the beat's tick), every open session is split into shares of
    settings.PERSIST_SESSIONS_PER_TASK: this call keeps the first, `share_out(share)` gets each
    other one (a task for any worker). `budget_seconds` bounds the time spent taking sessions
    (persistence.sessions_persist)."""
    if share_out is not None:
        shares = persistence.sessions_shares(per_share=settings.PERSIST_SESSIONS_PER_TASK)
        for share in shares[1:]:
            share_out(share)
        session_ids = shares[0] if shares else []
    elif session_ids is None:
        session_ids = persistence.sessions_to_persist()
    report = persistence.sessions_persist(session_ids, budget_seconds=budget_seconds).as_dict()
    report["restored"] = live_states_check(report["drained"], behind=set(report["behind"]))
    return report
