"""What anyone can check about a settled session: its bid log in a canonical form, the log's digest,
and an independent audit that replays the log with the pure rules (auctions.rules) and compares
the outcome with what the settlement stored. It shares no code path with the engine or the
settlement: only the rules, and PostgreSQL's record."""

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone
from sortedcontainers import SortedList

from auctions.models import BiddingSession, BidEvent, Ranking, SessionStatus
from auctions.rules import RankedBid, bid_score, end_after_bid, settle, to_us, us_to_datetime

_LOG_COLUMNS = ("seq", "bidder_id", "bidder__username", "price", "weight", "score", "accepted_at")


@dataclass(frozen=True, slots=True)
class LoggedBid:
    seq: int
    user_id: str
    username: str
    price: Decimal
    weight: float
    score: float
    accepted_at: dt.datetime


def utc_text(moment: dt.datetime) -> str:
    """UTC ISO-8601 with microseconds and Z: 2026-01-01T12:00:00.123456Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bid_log(session_id, *, page: int = 5_000) -> Iterator[LoggedBid]:
    """Every accepted bid of the session in seq order, a page at a time (constant memory). Pages are
    seq ranges on the (session, seq) index rather than a server-side cursor, which PgBouncer's
    transaction mode rules out. Ranges, not `seq > last ORDER BY seq LIMIT page`: right after a
    flood of bids (the settlement's digest) the table's statistics lag, and PostgreSQL then read
    every later bid of the session, joined to its user, for each page: 100,000 bids took ~3 s of
    the settlement instead of ~0.3 s (docs/PERFORMANCE.md, session 8). Seqs are dense (a gap only
    where a bid was lost); an empty range skips to the next seq there is."""
    events = BidEvent.objects.filter(session_id=session_id)
    after = 0
    while True:
        rows = list(events.filter(seq__gt=after, seq__lte=after + page).order_by("seq").values_list(*_LOG_COLUMNS))
        for seq, user_id, username, price, weight, score, accepted_at in rows:
            yield LoggedBid(seq, str(user_id), username, price, weight, score, accepted_at)
        if rows:
            # From the last seq read, not the range's end: bids saved while the log is read (a live
            # session's export) land in the next range rather than behind this one.
            after = rows[-1][0]
            continue
        following = events.filter(seq__gt=after).order_by("seq").values_list("seq", flat=True).first()
        if following is None:
            return
        after = following - 1


def log_record(bid: LoggedBid) -> dict:
    """One line of GET /api/sessions/{id}/log (prices and times as strings, weight and score numbers)."""
    return {"seq": bid.seq, "user_id": bid.user_id, "username": bid.username, "price": str(bid.price),
            "weight": bid.weight, "score": bid.score, "accepted_at": utc_text(bid.accepted_at)}


def digest_line(bid: LoggedBid) -> str:
    """The contract's canonical line: "{seq},{user_id},{price},{weight},{score},{accepted_at}\\n",
    numbers as the shortest text that round-trips the stored double (Python's repr)."""
    return f"{bid.seq},{bid.user_id},{bid.price},{bid.weight!r},{bid.score!r},{utc_text(bid.accepted_at)}\n"


def log_digest(session_id) -> str:
    """Lowercase hex SHA-256 of the canonical lines of the whole log, in seq order."""
    digest = hashlib.sha256()
    for bid in bid_log(session_id):
        digest.update(digest_line(bid).encode())
    return digest.hexdigest()


class AuditFailure(Exception):
    """The first difference between the replay and what is stored."""


def _replay(session: BiddingSession) -> list[RankedBid]:
    """Each bidder's standing bid after replaying the log with the rules; raises AuditFailure at
    the first logged bid the rules would not have accepted as logged, or when the soft close,
    replayed too (from the scheduled end), does not reach the stored effective end."""
    start_us, end_us = to_us(session.start_time), to_us(session.scheduled_end_time)
    hard_us = to_us(session.hard_end_time) if session.hard_end_time else None
    standing: dict[str, RankedBid] = {}
    order = SortedList()  # (-score, seq): the ranking order, for a bid's rank right after it
    for bid in bid_log(session.pk):
        at_us = to_us(bid.accepted_at)
        where = f"bid seq {bid.seq} ({bid.username}, {bid.price})"
        if not start_us <= at_us < end_us:
            raise AuditFailure(f"{where}: accepted at {utc_text(bid.accepted_at)}, outside the session's window "
                               f"(effective end {utc_text(us_to_datetime(end_us))})")
        if bid.price < session.upset_price:
            raise AuditFailure(f"{where}: below the upset price {session.upset_price}")
        previous = standing.get(bid.user_id)
        if previous is not None and bid.price <= previous.price:
            raise AuditFailure(f"{where}: not higher than the bidder's {previous.price} (seq {previous.seq})")
        expected = bid_score(alpha=session.alpha, beta=session.beta, gamma=session.gamma, price=bid.price,
                             weight=bid.weight, accepted_us=at_us, start_us=start_us)
        if expected != bid.score:
            raise AuditFailure(f"{where}: logged score {bid.score!r}, the rules give {expected!r}")
        if previous is not None:
            order.remove((-previous.score, previous.seq))
        order.add((-bid.score, bid.seq))
        standing[bid.user_id] = RankedBid(bidder_id=bid.user_id, price=bid.price, score=bid.score, seq=bid.seq)
        if session.extend_window_seconds:
            end_us = end_after_bid(end_us=end_us, accepted_us=at_us, rank=order.index((-bid.score, bid.seq)) + 1,
                                   inventory=session.inventory, window_s=session.extend_window_seconds,
                                   by_s=session.extend_by_seconds, hard_end_us=hard_us)
    if end_us != to_us(session.end_time):
        raise AuditFailure(f"effective end: stored {utc_text(session.end_time)}, the replay gives "
                           f"{utc_text(us_to_datetime(end_us))}")
    return list(standing.values())


def session_audit(*, session_id) -> str | None:
    """Replay a settled session's log and compare ranking, winners and final price with the stored
    ones. Returns None when they agree, else the first difference."""
    session = BiddingSession.objects.filter(pk=session_id).first()
    if session is None:
        return "no such session"
    if session.status != SessionStatus.SETTLED:
        return "the session is not settled"
    try:
        outcome = settle(_replay(session), inventory=session.inventory)
    except AuditFailure as failure:
        return str(failure)
    stored = list(Ranking.objects.filter(session=session).order_by("rank")
                  .values_list("rank", "bidder_id", "price", "score", "seq", "is_winner"))
    if len(stored) != len(outcome.ranking):
        return f"the replay ranks {len(outcome.ranking)} bidders, the settlement stored {len(stored)}"
    for (rank, bidder_id, price, score, seq, is_winner), bid in zip(stored, outcome.ranking, strict=True):
        expected = (str(bid.bidder_id), bid.price, bid.score, bid.seq, rank <= outcome.winners)
        if (str(bidder_id), price, score, seq, is_winner) != expected:
            return (f"rank {rank}: stored bidder {bidder_id} at {price} (score {score!r}, seq {seq}, "
                    f"winner {is_winner}); the replay gives {expected[0]} at {expected[1]} (score {expected[2]!r}, "
                    f"seq {expected[3]}, winner {expected[4]})")
    if session.final_price != outcome.final_price:
        return f"final price: stored {session.final_price}, the replay gives {outcome.final_price}"
    return None


def session_audit_record(*, session_id) -> str | None:
    """Run the audit and record its result on the session (shown in the admin and `results`)."""
    difference = session_audit(session_id=session_id)
    BiddingSession.objects.filter(pk=session_id).update(
        audit_verified=difference is None, audit_checked_at=timezone.now(), audit_detail=difference or "")
    return difference
