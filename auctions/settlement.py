"""Settlement: the end of a session. Exactly once per session, from PostgreSQL's durable record.

Order of work for one session (`session_settle`):
1. check by Redis's clock that the session has ended, then close it in Redis (a flag the bid
   script honours, so no bid is accepted from here on, whatever the clocks or stale parameters say),
   in one atomic step with a last check of the effective end there: a soft-close extension that
   PostgreSQL does not hold yet leaves the session open (and its end recorded);
2. drain its stream into PostgreSQL (all pending entries, whoever holds them), and repeat until no
   entry is pending on any consumer: an entry another worker read but has not committed yet (a
   persist tick running at the same moment) is claimed and written too, never skipped;
3. persist any bidder Redis ranks but PostgreSQL lacks or holds at an older seq (the stream
   entry was lost);
4. in one transaction holding the session's row lock (SELECT ... FOR UPDATE SKIP LOCKED, so
   racing workers skip it rather than wait): check `end_time` again (an admin who moved it into the
   future meanwhile reopens the session: nothing is settled), rank the Bid rows by the contract's
   order, write Ranking rows, final_price, status=settled, settled_at. A mismatch that cannot be
   resolved (Redis ranks bidders PostgreSQL cannot hold) never blocks the settlement: it settles
   PostgreSQL's record and raises an alert (log, metric, the session's `settlement_alert`);
5. after commit: mark the Redis state settled and send `auctions.events.session_settled` (the
   leaderboard announces the result to listeners; the worker queues the audit and the winners'
   result mail, auctions.result_mail).

A tick's work is bounded (settings.SETTLE_SESSIONS_PER_TICK due sessions, earliest end first) and
shared between workers (`sessions_settle_due` hands out shares; each session is settled under its
settle lease, so a worker given a session another one is settling moves on to the next).
"""

import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import LockError

from accounts.models import User
from auctions import live, persistence
from auctions.events import session_settled
from auctions.models import Bid, BiddingSession, Ranking, SessionStatus, status_q
from auctions.result_mail import RESULT_MAIL_GRACE
from auctions.rules import RankedBid, Settlement, cents_to_price, settle, to_us, us_to_datetime
from auctions.verification import log_digest, session_audit_record
from core.exceptions import ApplicationError, ErrorCode
from core.metrics import SETTLE_SECONDS, SETTLEMENT_ALERTS, SETTLEMENTS
from core.redis import get_redis, session_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    session_id: str
    bidders: int
    winners: int
    final_price: object
    seconds: float


def _persist_missing_from_redis(session_id: str) -> int:
    """Write Bid rows for bidders in the Redis ranking that PostgreSQL does not hold, or holds at
    an older seq than Redis (the upsert keeps the newer)."""
    keys = live.session_keys(session_id)
    client = get_redis()
    ranked = client.hgetall(keys.bids)
    if not ranked:
        return 0
    known = {str(bidder_id): seq for bidder_id, seq in
             Bid.objects.filter(session_id=session_id).values_list("bidder_id", "seq")}
    missing = []
    for user_id, value in ranked.items():
        cents, seq, score, accepted_us, _member = value.split("|", 4)
        if known.get(user_id, -1) >= int(seq):
            continue
        missing.append(("0-0", {"u": user_id, "p": str(cents_to_price(int(cents))), "s": score,
                                "q": seq, "t": accepted_us}))
    if missing:
        # The Redis bids hash keeps no weight; the bidder's weight now is the best record left
        # (the independent audit flags the bid if it had changed since).
        weights = {str(pk): weight for pk, weight in
                   User.objects.filter(pk__in=[f["u"] for _, f in missing]).values_list("pk", "weight")}
        for _, fields in missing:
            fields["w"] = repr(weights.get(fields["u"], 0.0))
        logger.warning("settlement %s: %d bidder(s) ranked in Redis are missing or older in PostgreSQL "
                       "(stream entries lost); persisting them from Redis",
                       session_id, len(missing))
        persistence.entries_write(session_id=session_id, entries=missing)
    return len(missing)


def session_settle(*, session_id: str) -> SettleOutcome | None:
    """Settle one ended session. Returns None when another worker holds it or it is settled.

    Raises ApplicationError `session_not_ended` before the end by Redis's clock."""
    started = time.perf_counter()
    session = BiddingSession.objects.filter(pk=session_id).first()
    if session is None:
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such session.")
    if session.status == SessionStatus.SETTLED:
        return None
    if live.redis_clock_us() < to_us(session.end_time):
        raise ApplicationError(ErrorCode.SESSION_NOT_ENDED, "The session has not ended yet.")

    closed, live_end_us = live.close(session.pk, end_us=to_us(session.end_time))
    if not closed:
        # A soft-close extension PostgreSQL does not hold yet (persist_bids writes it within
        # seconds): record it now, so the due check stops picking the session before its end.
        persistence.end_follow(session.pk, live_end_us)
        raise ApplicationError(ErrorCode.SESSION_NOT_ENDED,
                               f"The session's end was extended to {us_to_datetime(live_end_us):%Y-%m-%dT%H:%M:%S}Z.")
    try:
        persistence.session_drain_completely(session_id=str(session.pk))
    except persistence.DrainIncomplete as exc:
        raise ApplicationError(ErrorCode.UNAVAILABLE, f"{exc}; the settlement is retried shortly.",
                               retry_after=10) from None
    # A state that is not whole (Redis lost part of it) has nothing to add to PostgreSQL's record.
    live_bidders = get_redis().zcard(live.session_keys(session.pk).rank) if live.is_whole(session.pk) else 0
    if live_bidders:
        _persist_missing_from_redis(str(session.pk))
    elif Bid.objects.filter(session=session).exists():
        logger.warning("settlement %s: Redis holds no ranking; settling from PostgreSQL alone", session.pk)

    with transaction.atomic():
        locked = (BiddingSession.objects.select_for_update(skip_locked=True)
                  .filter(pk=session.pk).exclude(status=SessionStatus.SETTLED).first())
        if locked is None:
            return None
        if live.redis_clock_us() < to_us(locked.end_time):
            # The end moved into the future since step 1 (an admin's edit): the session is open again.
            live.reopen(locked.pk)
            logger.warning("settlement %s: its end moved to %s meanwhile; reopened, not settled",
                           locked.pk, locked.end_time)
            return None
        update_fields = ["final_price", "status", "settled_at", "updated_at"]
        if us_to_datetime(live_end_us) > locked.end_time:
            # The final effective end, should a stream entry that carried an extension be lost.
            locked.end_time = us_to_datetime(live_end_us)
            update_fields.append("end_time")
        bids = [RankedBid(bidder_id=str(bidder_id), price=price, score=score, seq=seq)
                for bidder_id, price, score, seq in
                Bid.objects.filter(session=locked).values_list("bidder_id", "price", "score", "seq")]
        if live_bidders and len(bids) < live_bidders:
            locked.settlement_alert = (f"Redis ranked {live_bidders} bidders, PostgreSQL holds {len(bids)} "
                                       f"(bids of users that no longer exist?); settled from PostgreSQL's record.")
            update_fields.append("settlement_alert")
            SETTLEMENT_ALERTS.inc()
            logger.error("settlement %s: %s", locked.pk, locked.settlement_alert)
        outcome = settle(bids, inventory=locked.inventory)
        _rankings_write(locked.pk, outcome)
        locked.final_price = outcome.final_price
        locked.status = SessionStatus.SETTLED
        locked.settled_at = timezone.now()
        # The winners' result mail is owed from now on: sent after the commit (worker.tasks.mail_results),
        # queued again by the settle tick if it is still owed past the grace (auctions.result_mail).
        locked.result_mail_due_at = locked.settled_at + RESULT_MAIL_GRACE if outcome.winners else None
        update_fields.append("result_mail_due_at")
        locked.log_digest = log_digest(locked.pk)  # of the log the ranking was made from (same transaction)
        update_fields.append("log_digest")
        locked.save(update_fields=update_fields)
        transaction.on_commit(lambda: _after_settled(str(locked.pk)))
    seconds = time.perf_counter() - started
    SETTLEMENTS.labels("settled").inc()
    SETTLE_SECONDS.observe(seconds)
    return SettleOutcome(session_id=str(locked.pk), bidders=len(bids), winners=outcome.winners,
                         final_price=outcome.final_price, seconds=seconds)


def _rankings_write(session_id, outcome: Settlement) -> None:
    """The session's Ranking rows, in rank order, by one COPY (in the caller's transaction). The
    ORM's bulk_create built, validated and adapted a model instance per row: about half of the
    settlement of 100,000 bidders (docs/PERFORMANCE.md, session 8)."""
    columns = "session_id, bidder_id, rank, price, score, seq, is_winner"
    # wrap_database_errors: Django wraps execute() and fetch*() in its own exceptions but not copy();
    # PostgreSQL going away mid-COPY must be the django.db.Error the callers handle.
    with connection.wrap_database_errors, connection.cursor() as cursor, \
            cursor.copy(f"COPY {Ranking._meta.db_table} ({columns}) FROM STDIN") as copy:
        for rank, bid in enumerate(outcome.ranking, start=1):
            copy.write_row((session_id, bid.bidder_id, rank, bid.price, bid.score, bid.seq, rank <= outcome.winners))


def _after_settled(session_id: str) -> None:
    """Mark the live state settled (bids refused, board says settled) and keep it a while."""
    keys = live.session_keys(session_id)
    pipe = get_redis().pipeline(transaction=True)
    pipe.hset(keys.params, "settled", "1")
    pipe.hincrby(keys.meta, "ver", 1)
    for name in keys.all():
        pipe.expire(name, live.SETTLED_KEYS_TTL_SECONDS)
    pipe.execute()
    session_settled.send(sender=BiddingSession, session_id=session_id)


def statuses_refresh() -> None:
    """Keep the stored status (admin filters) in step with the clock for unsettled sessions."""
    now = timezone.now()
    for status in (SessionStatus.SCHEDULED, SessionStatus.ACTIVE, SessionStatus.ENDED):
        BiddingSession.objects.filter(status_q(status, now)).exclude(status=status).update(status=status)


# A worker settling a session holds its settle lease, so that another worker given the same
# session moves on to the next one instead of draining the same stream; exactly-once does not rest
# on it (the row lock and the status do that), so a settlement longer than this is still safe.
SETTLE_LEASE_SECONDS = 120


def sessions_due(*, limit: int) -> list[str]:
    """Up to `limit` sessions whose end has passed by Redis's clock, not settled, earliest end first."""
    now = us_to_datetime(live.redis_clock_us())
    return [str(pk) for pk in BiddingSession.objects.exclude(status=SessionStatus.SETTLED).filter(end_time__lte=now)
            .order_by("end_time").values_list("pk", flat=True)[:limit]]


def sessions_settle(session_ids: list[str], *, budget_seconds: float | None = None) -> list[str]:
    """Settle these sessions, in order, each under its settle lease: one another worker holds is
    skipped (that worker settles it). Once `budget_seconds` have passed no further one is started
    (the next tick's). A failure is logged and counted; the next tick tries again. Returns the
    sessions settled here.

    Cost: per session, its final drain (whatever its stream still holds) and one transaction
    writing a Ranking row per bidder (~0.1 s per 10,000 bidders)."""
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    settled = []
    for session_id in session_ids:
        if deadline is not None and time.monotonic() >= deadline:
            break
        lease = get_redis().lock(session_key(session_id, "settle"), timeout=SETTLE_LEASE_SECONDS, blocking=False)
        if not lease.acquire():
            continue
        try:
            outcome = session_settle(session_id=session_id)
        except Exception as exc:
            if isinstance(exc, ApplicationError) and exc.code == ErrorCode.SESSION_NOT_ENDED:
                # A soft-close extension PostgreSQL did not hold yet (now recorded): not a failure.
                logger.info("settlement of %s waits: %s", session_id, exc.detail)
                continue
            SETTLEMENTS.labels("failed").inc()
            logger.exception("settlement of %s failed; it will be retried on the next tick", session_id)
            continue
        finally:
            try:
                lease.release()
            except LockError:
                logger.warning("settlement of %s outlasted its lease", session_id)
        if outcome is not None:
            logger.info("settled %s: %d bidders, %d winners, final price %s in %.3f s", outcome.session_id,
                        outcome.bidders, outcome.winners, outcome.final_price, outcome.seconds)
            settled.append(outcome.session_id)
    return settled


def sessions_settle_due(*, share_out=None, budget_seconds: float | None = None) -> list[str]:
    """A settlement tick: settle sessions whose end has passed by Redis's clock (at most
    settings.SETTLE_SESSIONS_PER_TICK, earliest end first), each exactly once whatever other
    workers do at the same time. Also keeps the stored statuses in step and audits settlements
    whose audit never ran.

    With `share_out` (the beat's tick), the due sessions are split into shares of
    settings.SETTLE_SESSIONS_PER_TASK: this call settles the first, `share_out(share)` gets each
    other one (a task for any worker). Returns the sessions settled by this call."""
    statuses_refresh()
    _audits_catch_up()
    due = sessions_due(limit=settings.SETTLE_SESSIONS_PER_TICK)
    if share_out is not None:
        per_share = settings.SETTLE_SESSIONS_PER_TASK
        for start in range(per_share, len(due), per_share):
            share_out(due[start:start + per_share])
        due = due[:per_share]
    return sessions_settle(due, budget_seconds=budget_seconds)


# Settled sessions whose audit never ran (its task was lost): a few per tick.
AUDITS_PER_TICK = 5


def _audits_catch_up() -> None:
    """The audit runs by itself after each settlement (worker.tasks.audit_session, sent after the
    commit); a settled session it never reached is audited here, a few per tick."""
    # Only sessions settled by this code (they have a digest): older ones were settled under the
    # earlier final-price rule, keep that price, and are audited on request (manage.py audit_session).
    missed = (BiddingSession.objects.filter(status=SessionStatus.SETTLED, audit_checked_at__isnull=True,
                                            settled_at__lt=timezone.now() - dt.timedelta(minutes=1))
              .exclude(log_digest="")
              .order_by("settled_at").values_list("pk", flat=True)[:AUDITS_PER_TICK])
    for session_id in missed:
        difference = session_audit_record(session_id=session_id)
        if difference:
            logger.error("audit of session %s failed: %s", session_id, difference)
