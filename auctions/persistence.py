"""Write-behind: the bid streams in Redis drained into PostgreSQL, at least once and idempotently.

Every accepted bid is an entry of its session's stream (place_bid.lua). Entries are read through
the consumer group PERSIST_GROUP, written in one transaction per batch (BidEvent rows unique per
session+seq; the current Bid row per bidder only replaced by a higher seq), then acknowledged and
trimmed from the stream (lua/stream_trim.lua). An entry is acknowledged only after its batch
committed, so a crash at any point leaves it pending, to be re-read by its consumer or reclaimed by
another after settings.PERSIST_RECLAIM_IDLE_MS.

A seq PostgreSQL already holds for a *different* bid means Redis lost writes and handed it out
again: that bid is an alert (logged, counted) and is kept under a new seq, never skipped. After
each batch Redis's seq is raised above what was written, so it hands out no seq PostgreSQL holds.

Work is shared between any number of processes, session by session: whoever drains a session
holds its drain lease (`drain_lease`), so each session is drained by one process at a time while
the others take other sessions. A tick hands the open sessions out in shares (`sessions_shares`),
one per worker task.
"""

import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from auctions.live import seq_floor_raise, session_keys
from auctions.models import BiddingSession, SessionStatus
from auctions.rules import us_to_datetime
from core.metrics import PERSIST_BATCH_ROWS, PERSIST_BATCH_SECONDS, PERSIST_SEQ_CONFLICTS, PERSIST_SKIPPED
from core.redis import get_redis, session_key
from core.scripts import lua_sources, script, script_queue

logger = logging.getLogger(__name__)

PERSIST_GROUP = "persist"
SOURCES = lua_sources(Path(__file__).resolve().parent / "lua", "stream_trim")
# Entries per batch. Redis runs one command at a time and every bid waits behind the one running:
# reading a batch (XREADGROUP, which also records each entry as pending) costs it 1-3 us per entry,
# acknowledging one ~0.5 us. With 1,000 entries the longest such command took 2-4.5 ms; with 5,000
# up to 14 ms (and the XDEL of the batch that lua/stream_trim.lua replaced, 11.5 ms more), for no
# faster drain (docs/PERFORMANCE.md, "A co-located worker").
BATCH_SIZE = 1_000
# A tick drains at most this many batches per session, so one tick stays bounded (~5 s at 20k
# rows/s); the rest waits for the next tick.
MAX_BATCHES_PER_TICK = 100
# A drain lease outlives any one batch and is renewed after each, so a process killed mid-drain
# keeps the session from the others for at most this long. Were it to run out under a slow batch,
# two processes would drain the session at once for a while: harmless, the writes are idempotent.
DRAIN_LEASE_SECONDS = 10


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class PersistReport:
    events: int = 0
    bids: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    # Sessions whose Redis seq was below what PostgreSQL now holds: Redis lost writes.
    behind: set[str] = field(default_factory=set)
    # Sessions drained here (under their lease), skipped because another process held the lease,
    # and left for the next tick (the time budget ran out).
    drained: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def add(self, session_id: str, events: int, bids: int) -> None:
        self.events += events
        self.bids += bids
        if events:
            self.sessions[session_id] = self.sessions.get(session_id, 0) + events

    def as_dict(self) -> dict:
        return {"events": self.events, "bids": self.bids, "sessions": self.sessions, "behind": sorted(self.behind),
                "drained": self.drained, "busy": self.busy, "left": self.left}


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, PERSIST_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _group_read(client: redis.Redis, stream: str, command, *args, **kwargs):
    """`command(*args, **kwargs)`, a read of the stream through PERSIST_GROUP. Redis may have lost
    the stream or its group since the drain began (NOGROUP: a flush, a restart without its data):
    the group is made again, from the stream's first entry, and the read tried once more. The drain
    then goes on with what the stream now holds, and the tick restores the session's live state
    after it (auctions.recovery.live_states_check); before, the error ended the whole tick, and the
    restore and the other sessions of its share waited for the next one."""
    try:
        return command(*args, **kwargs)
    except redis.ResponseError as exc:
        if not str(exc).startswith("NOGROUP"):
            raise
        logger.warning("persist: %s or its consumer group vanished during a drain (Redis lost data); "
                       "made again", stream)
    _ensure_group(client, stream)
    return command(*args, **kwargs)


_BATCH_TABLE_SQL = """
CREATE TEMP TABLE persist_batch (
    session_id uuid, bidder_id uuid, seq bigint, price numeric(12, 2),
    score double precision, weight double precision, accepted_at timestamptz
) ON COMMIT DROP
"""
_EVENTS_SQL = """
INSERT INTO auctions_bidevent (session_id, bidder_id, seq, price, score, weight, accepted_at, persisted_at)
SELECT b.session_id, b.bidder_id, b.seq, b.price, b.score, b.weight, b.accepted_at, now()
FROM persist_batch b JOIN accounts_user u ON u.id = b.bidder_id
ON CONFLICT (session_id, seq) DO NOTHING
"""
# Batch rows whose seq PostgreSQL holds for a different bid (only looked for when the insert above
# skipped rows: an entry written before, re-read after a crash, is the same bid and no conflict).
_CONFLICTS_SQL = """
SELECT b.seq FROM persist_batch b
JOIN auctions_bidevent e ON e.session_id = b.session_id AND e.seq = b.seq
WHERE (e.bidder_id, e.price, e.accepted_at) IS DISTINCT FROM (b.bidder_id, b.price, b.accepted_at)
"""
# A conflicting row already kept under a new seq by an earlier write of the same entry: drop it.
_KEPT_BEFORE_SQL = """
DELETE FROM persist_batch b WHERE b.seq = ANY(%s) AND EXISTS (
    SELECT 1 FROM auctions_bidevent e WHERE e.session_id = b.session_id AND e.bidder_id = b.bidder_id
    AND e.price = b.price AND e.accepted_at = b.accepted_at)
"""
# The rest get new seqs above everything the session holds, in acceptance order.
_RESEQUENCE_SQL = """
WITH top AS (SELECT coalesce(max(seq), 0) AS seq FROM auctions_bidevent WHERE session_id = %s),
     moved AS (SELECT b.ctid AS row, top.seq + row_number() OVER (ORDER BY b.accepted_at, b.seq) AS seq
               FROM persist_batch b, top WHERE b.seq = ANY(%s))
UPDATE persist_batch b SET seq = moved.seq FROM moved WHERE b.ctid = moved.row
RETURNING b.seq
"""
# DISTINCT ON: one statement cannot update the same row twice. The WHERE keeps a newer row, and
# never a lower price (the same bidder's later bid is always higher, unless Redis lost writes and
# took a bid below one PostgreSQL holds: then the higher one stays the bidder's bid).
_BIDS_SQL = """
INSERT INTO auctions_bid (session_id, bidder_id, price, score, seq, accepted_at, updated_at)
SELECT DISTINCT ON (b.session_id, b.bidder_id)
       b.session_id, b.bidder_id, b.price, b.score, b.seq, b.accepted_at, now()
FROM persist_batch b JOIN accounts_user u ON u.id = b.bidder_id
ORDER BY b.session_id, b.bidder_id, b.seq DESC
ON CONFLICT (session_id, bidder_id) DO UPDATE
SET price = excluded.price, score = excluded.score, seq = excluded.seq,
    accepted_at = excluded.accepted_at, updated_at = excluded.updated_at
WHERE auctions_bid.seq < excluded.seq AND auctions_bid.price < excluded.price
"""


@transaction.atomic
def entries_write(*, session_id: str, entries: list[tuple[str, dict]]) -> tuple[int, int, int]:
    """Write one batch of stream entries in one transaction. Returns (events, bids) written and
    the largest seq the batch holds (after any re-sequencing).

    Idempotent: re-writing an entry changes nothing. A seq already held by a different bid is
    re-sequenced (see the module's docstring). Entries of users that no longer exist are skipped
    and counted (a user who has bid cannot be deleted, so this is an alert too)."""
    with connection.cursor() as cursor:
        # The batch is joined to accounts_user to skip deleted users. A hash join would read the
        # whole user table on every batch (20+ ms at 100k users, growing with them); probing its
        # primary key once per entry does not grow. Transaction-scoped, so fine under PgBouncer.
        cursor.execute("SET LOCAL enable_hashjoin = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        cursor.execute(_BATCH_TABLE_SQL)
        # Django wraps execute() in its own exceptions but not copy(): PostgreSQL going away
        # mid-COPY must be the django.db.Error the tasks handle as an outage.
        with connection.wrap_database_errors, cursor.copy(
            "COPY persist_batch (session_id, bidder_id, seq, price, score, weight, accepted_at) FROM STDIN"
        ) as copy:
            for _entry_id, f in entries:
                copy.write_row((session_id, f["u"], int(f["q"]), f["p"], float(f["s"]), float(f["w"]),
                                us_to_datetime(int(f["t"]))))
        cursor.execute(_EVENTS_SQL)
        events = cursor.rowcount
        if events < len(entries):
            events += _conflicts_resolve(cursor, session_id, len(entries) - events)
        cursor.execute(_BIDS_SQL)
        bids = cursor.rowcount
        cursor.execute("SELECT coalesce(max(seq), 0) FROM persist_batch")
        max_seq = cursor.fetchone()[0]
    extended_to = max((int(f["e"]) for _, f in entries if "e" in f), default=None)
    if extended_to is not None:
        end_follow(session_id, extended_to)
    return events, bids, max_seq


def end_follow(session_id, end_us: int) -> None:
    """A soft-close extension reaches PostgreSQL: the effective end moves up to the bid script's
    (it only grows; an update of `end_time` alone is no audit-trail event: the scheduled end, the
    term, is unchanged). From the write-behind (an extending bid's stream entry), and from the
    settlement when Redis's close found an extension PostgreSQL did not hold yet."""
    end = us_to_datetime(end_us)
    BiddingSession.objects.filter(pk=session_id, end_time__lt=end).exclude(
        status=SessionStatus.SETTLED).update(end_time=end)


def _conflicts_resolve(cursor, session_id: str, skipped: int) -> int:
    """After the insert skipped `skipped` rows: keep every bid that collided with a different one
    under a new seq. Returns the events written here."""
    cursor.execute(_CONFLICTS_SQL)
    conflicts = [row[0] for row in cursor.fetchall()]
    if not conflicts:
        cursor.execute("SELECT count(*) FROM persist_batch b WHERE NOT EXISTS "
                       "(SELECT 1 FROM accounts_user u WHERE u.id = b.bidder_id)")
        orphans = cursor.fetchone()[0]
        if orphans:
            PERSIST_SKIPPED.labels("no_such_user").inc(orphans)
            logger.error("persist %s: %d bid(s) of users that no longer exist were not written", session_id, orphans)
        return 0
    # New seqs are taken from the session's maximum: one writer of them per session at a time.
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"persist-reseq:{session_id}"])
    cursor.execute(_KEPT_BEFORE_SQL, [conflicts])
    cursor.execute(_RESEQUENCE_SQL, [session_id, conflicts])
    moved = [row[0] for row in cursor.fetchall()]
    if not moved:
        return 0
    PERSIST_SEQ_CONFLICTS.inc(len(moved))
    logger.error("persist %s: %d bid(s) carried a seq PostgreSQL holds for a different bid (Redis lost writes); "
                 "kept under new seqs %s", session_id, len(moved), moved)
    cursor.execute(_EVENTS_SQL)  # the moved rows have new seqs now; the others are skipped again
    return cursor.rowcount


def _apply(client: redis.Redis, stream: str, session_id: str, entries: list, report: PersistReport) -> None:
    # An entry pending but no longer in the stream comes back without fields: there is nothing
    # to write, but it must be acknowledged, or it would be re-read forever.
    gone = [entry_id for entry_id, fields in entries if entry_id is not None and not fields]
    entries = [(entry_id, fields) for entry_id, fields in entries if fields]
    if gone:
        client.xack(stream, PERSIST_GROUP, *gone)
    if not entries:
        return
    started = time.perf_counter()
    events, bids, max_seq = entries_write(session_id=session_id, entries=entries)
    ids = [entry_id for entry_id, _ in entries]
    # Only after the commit: acknowledge, then drop what PostgreSQL now holds.
    pipe = client.pipeline(transaction=False)
    pipe.xack(stream, PERSIST_GROUP, *ids)
    script_queue(pipe, script(client, "stream_trim", SOURCES["stream_trim"]), keys=[stream], args=[PERSIST_GROUP])
    pipe.execute()
    if seq_floor_raise(session_id, max_seq):
        report.behind.add(session_id)
    report.add(session_id, events, bids)
    PERSIST_BATCH_ROWS.observe(len(entries))
    PERSIST_BATCH_SECONDS.observe(time.perf_counter() - started)


def drain_lease(session_id, *, wait: float | None = None):
    """The session's drain lease: a redis-py Lock (SET NX with an expiry; only its holder renews or
    deletes it) on a key in the session's own slot. `wait`: seconds to wait for it, else none."""
    return get_redis().lock(session_key(session_id, "drain"), timeout=DRAIN_LEASE_SECONDS,
                            blocking=wait is not None, blocking_timeout=wait)


def _lease_renew(lease) -> None:
    try:
        lease.reacquire()
    except redis.exceptions.LockError:
        # Expired under a slow batch (and maybe taken): harmless, the writes are idempotent.
        logger.warning("persist: a drain lease expired during the drain")


def _lease_release(lease) -> None:
    try:
        lease.release()
    except redis.exceptions.LockError:
        logger.warning("persist: a drain lease expired before the drain ended")


def session_drain(*, session_id: str, report: PersistReport | None = None, reclaim_idle_ms: int | None = None,
                  max_batches: int = MAX_BATCHES_PER_TICK, on_batch=None) -> PersistReport:
    """Persist a session's stream: first this consumer's own pending entries, then entries pending
    on other consumers for `reclaim_idle_ms` (XAUTOCLAIM, following its cursor; default
    settings.PERSIST_RECLAIM_IDLE_MS), then new ones. `on_batch()` is called after each batch.

    Runs under the session's drain lease, held by the caller (sessions_persist renews it from
    `on_batch`); without it a drain is still correct, only no longer alone. The settlement calls it
    (through session_drain_completely) with reclaim_idle_ms=0 and no batch bound, to leave nothing
    behind."""
    report = report or PersistReport()
    if reclaim_idle_ms is None:
        reclaim_idle_ms = settings.PERSIST_RECLAIM_IDLE_MS
    on_batch = on_batch or (lambda: None)
    client = get_redis()
    stream = session_keys(session_id).stream
    _ensure_group(client, stream)
    me = consumer_name()
    batches = 0

    def read_group(start: str) -> None:
        """Batches from XREADGROUP at `start` ("0": own pending entries; ">": new ones) until none."""
        nonlocal batches
        while batches < max_batches:
            reply = _group_read(client, stream, client.xreadgroup, PERSIST_GROUP, me, {stream: start},
                                count=BATCH_SIZE)
            entries = reply[0][1] if reply else []
            if not entries:
                return
            _apply(client, stream, session_id, entries, report)
            batches += 1
            on_batch()

    read_group("0")  # own pending entries (a failed earlier batch of this process)

    cursor = "0-0"
    while batches < max_batches:  # entries left pending by a dead or stuck consumer
        cursor, entries, _deleted = _group_read(client, stream, client.xautoclaim, stream, PERSIST_GROUP, me,
                                                reclaim_idle_ms, start_id=cursor, count=BATCH_SIZE)
        _apply(client, stream, session_id, entries, report)
        batches += 1
        on_batch()
        if cursor == "0-0":
            break

    read_group(">")  # new entries
    return report


# A drain round ends with an empty read of new entries; more rounds are only needed while other
# consumers hold entries they read before (each round claims them). Bounded, so a stuck stream
# fails the caller (retried later) instead of hanging the worker.
DRAIN_ROUNDS = 20


class DrainIncomplete(RuntimeError):
    """Entries were still pending on other consumers after DRAIN_ROUNDS rounds."""


def session_drain_completely(*, session_id: str) -> None:
    """Drain the stream until no entry is pending on any consumer: every entry anyone read is
    claimed and written, never skipped (an entry acknowledged by anyone was committed first).
    For a session no bid can be added to (closed, or held by a restore). Takes the session's drain
    lease, waiting for a tick that holds it (a dead holder's runs out within DRAIN_LEASE_SECONDS)."""
    lease = drain_lease(session_id, wait=DRAIN_LEASE_SECONDS + 1)
    if not lease.acquire():
        raise DrainIncomplete(f"session {session_id}: its drain lease stayed taken for {DRAIN_LEASE_SECONDS + 1} s")
    try:
        client = get_redis()
        stream = session_keys(session_id).stream
        for round_ in range(DRAIN_ROUNDS):
            if round_:
                time.sleep(0.05)
            session_drain(session_id=session_id, reclaim_idle_ms=0, max_batches=10**9,
                          on_batch=lambda: _lease_renew(lease))
            pending = _group_read(client, stream, client.xpending, stream, PERSIST_GROUP)["pending"]
            if not pending:
                return
            logger.info("drain of %s: %d entries still pending on other consumers; draining again", session_id,
                        pending)
        raise DrainIncomplete(f"session {session_id}: stream entries still pending after {DRAIN_ROUNDS} rounds")
    finally:
        _lease_release(lease)


def sessions_to_persist() -> list[str]:
    """Sessions whose streams may hold entries: started and not yet settled."""
    return [str(pk) for pk in BiddingSession.objects.exclude(status=SessionStatus.SETTLED)
            .filter(start_time__lte=timezone.now()).values_list("pk", flat=True)]


def sessions_shares(*, per_share: int) -> list[list[str]]:
    """Every session to persist, in random order, in shares of at most `per_share`: one per task,
    so that a tick keeps every worker busy when there are many sessions."""
    session_ids = sessions_to_persist()
    random.shuffle(session_ids)
    return [session_ids[n:n + per_share] for n in range(0, len(session_ids), per_share)]


def sessions_persist(session_ids: list[str], *, budget_seconds: float | None = None) -> PersistReport:
    """Drain these sessions' streams, each under its drain lease, in random order (processes given
    the same sessions spread over them): a session whose lease another process holds is skipped
    (`busy`: that process drains it). Once `budget_seconds` have passed no further session is
    taken (`left`: the next tick's).

    Cost: per session drained, at most MAX_BATCHES_PER_TICK x BATCH_SIZE entries (~1 s at 50k
    rows/s), and about 7 Redis round trips when its stream has nothing new."""
    report = PersistReport()
    order = list(session_ids)
    random.shuffle(order)
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    for n, session_id in enumerate(order):
        if deadline is not None and time.monotonic() >= deadline:
            report.left = order[n:]
            break
        lease = drain_lease(session_id)
        if not lease.acquire():
            report.busy.append(session_id)
            continue
        try:
            session_drain(session_id=session_id, report=report, on_batch=_BatchYield(session_id, lease))
            report.drained.append(session_id)
        finally:
            _lease_release(lease)
    return report


# The longest pause after one batch of a periodic drain (_BatchYield).
YIELD_PAUSE_MAX_SECONDS = 1.0


class _BatchYield:
    """After each batch of a periodic drain: renew the drain lease, then pause PERSIST_YIELD_RATIO
    times as long as the batch took, unless the stream was behind when the drain began (its oldest
    entry PERSIST_YIELD_LAG_SECONDS old or more: PostgreSQL was away, or the workers could not keep
    up; catching up comes first). A batch's work is mostly PostgreSQL's (COPY, the upserts), in a
    server process the worker's `nice` does not reach; back to back, a tick's batches held a core
    for hundreds of milliseconds and the web processes' requests queued behind them (bid p99 at
    half capacity with the worker on the box: docs/PERFORMANCE.md, issue 18). Paused, each burst
    is one batch, and the web processes catch up in between.

    Behind is a matter of age, not of length: at 4,500 bids/s a single 5 s tick finds 22,500
    entries, none of them late (a rule by length, 20,000 entries, turned the pauses off exactly
    under the heaviest load)."""

    def __init__(self, session_id: str, lease):
        self.lease = lease
        self.pause = settings.PERSIST_YIELD_RATIO
        stream = session_keys(session_id).stream
        if self.pause > 0 and _stream_lag_seconds(stream) >= settings.PERSIST_YIELD_LAG_SECONDS:
            self.pause = 0.0
        self.since = time.monotonic()

    def __call__(self) -> None:
        _lease_renew(self.lease)
        if self.pause > 0:
            time.sleep(min((time.monotonic() - self.since) * self.pause, YIELD_PAUSE_MAX_SECONDS))
        self.since = time.monotonic()


def _redis_now_ms(client) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def _entry_ms(entry_id: str) -> int:
    """When an entry was added (by Redis's clock): the first part of its id (XADD's `*`)."""
    return int(entry_id.split("-")[0])


def _stream_lag_seconds(stream: str) -> float:
    """How old the stream's oldest entry is (entries are deleted once in PostgreSQL): 0 if empty."""
    client = get_redis()
    first = client.xrange(stream, count=1)
    return max(0.0, (_redis_now_ms(client) - _entry_ms(first[0][0])) / 1000) if first else 0.0


@dataclass(frozen=True, slots=True)
class PersistLag:
    session_id: str
    length: int
    pending: int
    oldest_age_seconds: float


def persist_lag() -> list[PersistLag]:
    """For each open session: what its stream still holds and how old the oldest entry is (by
    Redis's clock; entries are deleted once in PostgreSQL, so that age is the persist lag)."""
    client = get_redis()
    session_ids = sessions_to_persist()
    now_ms = _redis_now_ms(client)  # TIME on its own: a cluster pipeline takes only commands with keys
    pipe = client.pipeline(transaction=False)
    for session_id in session_ids:
        stream = session_keys(session_id).stream
        pipe.xlen(stream)
        pipe.xrange(stream, count=1)
        pipe.xpending(stream, PERSIST_GROUP)
    replies = pipe.execute(raise_on_error=False)
    lags = []
    for n, session_id in enumerate(session_ids):
        length, first, pending = replies[3 * n: 3 + 3 * n]
        if isinstance(length, Exception) or not length:
            continue
        oldest_ms = _entry_ms(first[0][0]) if first and not isinstance(first, Exception) else now_ms
        pending_count = pending["pending"] if isinstance(pending, dict) else 0
        lags.append(PersistLag(session_id, length, pending_count, max(0.0, (now_ms - oldest_ms) / 1000)))
    return lags


def bids_persist_all() -> dict:
    """Persist every open session's stream now, each under its drain lease (sessions another
    process is draining are skipped: it drains them)."""
    return sessions_persist(sessions_to_persist()).as_dict()


class PersistLagCollector:
    """/metrics at scrape time (core.metrics.scrape_collector_register, from AuctionsConfig.ready):
    per open session the stream length, entries read but not acknowledged, and the age of the
    oldest entry still in the stream (entries are trimmed once written: this is the persist lag)."""

    def collect(self):
        length = GaugeMetricFamily("flashbid_persist_stream_length", "Bid stream entries not yet trimmed.",
                                   labels=["session"])
        pending = GaugeMetricFamily("flashbid_persist_pending", "Entries read by a worker, not yet acknowledged.",
                                    labels=["session"])
        age = GaugeMetricFamily("flashbid_persist_lag_seconds", "Age of the oldest bid not yet in PostgreSQL.",
                                labels=["session"])
        for lag in persist_lag():
            length.add_metric([lag.session_id], lag.length)
            pending.add_metric([lag.session_id], lag.pending)
            age.add_metric([lag.session_id], lag.oldest_age_seconds)
        yield from (length, pending, age)
