"""Auction reads: sessions for the API and pages, a bidder's own bids across sessions."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from redis.exceptions import RedisError

from auctions import live, recovery
from auctions.models import Bid, BiddingSession, BidEvent, Ranking, SessionStatus, status_q
from auctions.rules import cents_to_price, us_to_datetime
from core.redis import get_redis
from core.scripts import script_queue

logger = logging.getLogger(__name__)


def sessions_list(*, status: str | None = None, limit: int = 100) -> list[BiddingSession]:
    sessions = BiddingSession.objects.select_related("product").order_by("-start_time")
    if status is not None:
        sessions = sessions.filter(status_q(status, timezone.now()))
    return ends_follow_live(list(sessions[:limit]))


def session_get(*, session_id) -> BiddingSession | None:
    session = BiddingSession.objects.select_related("product").filter(pk=session_id).first()
    return ends_follow_live([session])[0] if session is not None else None


def ends_follow_live(sessions: list[BiddingSession]) -> list[BiddingSession]:
    """Each session's `end_time` as the bid script knows it: a soft-close extension reaches
    PostgreSQL with the next persist tick (seconds), Redis has it at once. Only unsettled sessions
    with a soft close can have one, so only those cost a read (one pipelined round trip)."""
    extensible = [s for s in sessions if s.extend_window_seconds and s.status != SessionStatus.SETTLED]
    if not extensible:
        return sessions
    pipe = get_redis().pipeline(transaction=False)
    for session in extensible:
        pipe.hget(live.session_keys(session.pk).params, "ext_us")
    try:
        extended = pipe.execute()
    except RedisError as exc:  # PostgreSQL's end is at most one persist tick behind
        logger.warning("could not read the live ends of %d session(s): %s", len(extensible), exc)
        return sessions
    for session, ext_us in zip(extensible, extended, strict=True):
        if ext_us and us_to_datetime(int(ext_us)) > session.end_time:
            session.end_time = us_to_datetime(int(ext_us))
    return sessions


def session_exists(*, session_id, settled: bool = False) -> bool:
    """Whether the session exists (and, with `settled`, is settled)."""
    sessions = BiddingSession.objects.filter(pk=session_id)
    return (sessions.filter(status=SessionStatus.SETTLED) if settled else sessions).exists()


def session_as_dict(session: BiddingSession, now=None) -> dict:
    """The contract's `session` object."""
    return {
        "id": session.id,
        "product": {
            "id": session.product.id,
            "name": session.product.name,
            "description": session.product.description,
        },
        "upset_price": session.upset_price,
        "inventory": session.inventory,
        "alpha": session.alpha,
        "beta": session.beta,
        "gamma": session.gamma,
        "start_time": session.start_time,
        "end_time": session.end_time,
        "status": session.current_status(now or timezone.now()),
        "final_price": session.final_price,
        "scheduled_end_time": session.scheduled_end_time,
        "extend_window_seconds": session.extend_window_seconds,
        "extend_by_seconds": session.extend_by_seconds,
        "hard_end_time": session.hard_end_time,
    }


def results_get(*, session_id) -> dict | None:
    """The settled outcome of a session (None if it is not settled)."""
    session = BiddingSession.objects.filter(pk=session_id, status=SessionStatus.SETTLED).first()
    if session is None:
        return None
    rankings = Ranking.objects.filter(session=session).select_related("bidder").order_by("rank")
    winners = [
        {"rank": r.rank, "user_id": r.bidder_id, "username": r.bidder.username, "price": r.price, "score": r.score}
        for r in rankings.filter(is_winner=True)
    ]
    return {
        "session_id": session.id,
        "final_price": session.final_price,
        "inventory": session.inventory,
        "total_bidders": rankings.count(),
        "winners": winners,
        "settled_at": session.settled_at,
        "log_digest": session.log_digest or None,
        "audit": {"verified": session.audit_verified, "checked_at": session.audit_checked_at},
    }


def bidder_ranking(*, session_id, bidder_id) -> Ranking | None:
    """One bidder's settled place in a session (None if they did not bid or it is not settled)."""
    return Ranking.objects.filter(session_id=session_id, bidder_id=bidder_id).first()


def live_bid_sessions(*, user_id: str) -> list[str]:
    """Open sessions where Redis holds a bid of this user (accepted, maybe not yet persisted)."""
    open_ids = [str(pk) for pk in BiddingSession.objects.exclude(status=SessionStatus.SETTLED)
                .values_list("pk", flat=True)]
    pipe = get_redis().pipeline(transaction=False)
    for session_id in open_ids:
        pipe.hexists(live.session_keys(session_id).bids, user_id)
    return [session_id for session_id, held in zip(open_ids, pipe.execute(), strict=True) if held]


def user_has_bids(*, user_id: str) -> bool:
    """Whether the user has ever bid (PostgreSQL's record, or a bid only Redis holds so far)."""
    return (Bid.objects.filter(bidder_id=user_id).exists() or BidEvent.objects.filter(bidder_id=user_id).exists()
            or bool(live_bid_sessions(user_id=user_id)))


@dataclass(frozen=True, slots=True)
class Standing:
    """One bidder in one session they bid in: live from Redis while it is open or settling
    (`price`, `rank` by the my_bid script, as GET /api/sessions/{id}/bids/me), from Ranking once
    settled. `rank` is None when it cannot be told right now (the live state is being restored)."""

    session: BiddingSession
    status: str
    price: Decimal | None
    rank: int | None
    is_winning: bool | None


def bidder_standings(*, bidder_id, limit: int = 200) -> list[Standing]:
    """The sessions `bidder_id` bid in, most recent end first: one SQL query (their own Bid and
    Ranking rows as subqueries) and one Redis round trip (the my_bid script of every started
    unsettled session, in one pipeline: a bid only Redis holds yet, not persisted, counts too)."""
    now = timezone.now()
    bid = Bid.objects.filter(session=OuterRef("pk"), bidder_id=bidder_id)
    ranked = Ranking.objects.filter(session=OuterRef("pk"), bidder_id=bidder_id)
    sessions = list(
        BiddingSession.objects.select_related("product")
        .annotate(my_price=Subquery(bid.values("price")[:1]), my_rank=Subquery(ranked.values("rank")[:1]),
                  my_ranked_price=Subquery(ranked.values("price")[:1]),
                  my_win=Subquery(ranked.values("is_winner")[:1]))
        .filter(Exists(bid) | Exists(ranked) | (~Q(status=SessionStatus.SETTLED) & Q(start_time__lte=now)))
        .order_by("-end_time")[:limit])
    live_ones = [s for s in sessions if s.current_status(now) != SessionStatus.SETTLED]
    standings = {s.pk: _live_standing(s, reply, now) for s, reply in zip(live_ones, _my_bids(live_ones, bidder_id),
                                                                         strict=True)}
    out = []
    for session in sessions:
        if session.pk in standings:
            if standings[session.pk] is not None:
                out.append(standings[session.pk])
        else:
            price = session.my_ranked_price if session.my_ranked_price is not None else session.my_price
            out.append(Standing(session=session, status=SessionStatus.SETTLED, price=price, rank=session.my_rank,
                                is_winning=session.my_win))
    return out


def _my_bids(sessions: list[BiddingSession], bidder_id) -> list:
    """my_bid.lua's reply for each session, in one pipeline; a state that is not whole is restored
    first (as the API's reads do) and asked again."""
    if not sessions:
        return []
    client = get_redis()
    script = live.script(client, "my_bid")

    def ask(batch):
        pipe = client.pipeline(transaction=False)
        for session in batch:
            keys = live.session_keys(session.pk)
            script_queue(pipe, script, keys=[keys.params, keys.rank, keys.bids, keys.meta], args=[str(bidder_id)])
        return pipe.execute()

    replies = ask(sessions)
    for i, (session, reply) in enumerate(zip(sessions, replies, strict=True)):
        if reply[0] == "err" and reply[1] == "no_params" \
                and recovery.live_state_ensure(session_id=session.pk) in ("whole", "restored"):
            replies[i] = ask([session])[0]
    return replies


def _live_standing(session: BiddingSession, reply: list, now) -> Standing | None:
    status = session.current_status(now)
    if reply[0] == "ok" and reply[14]:  # my_bid.lua: the session's terms, then this bidder's cents, score, rank
        inventory, (cents, _score, rank) = int(reply[1]), reply[12:15]
        return Standing(session=session, status=status, price=cents_to_price(int(cents)), rank=int(rank),
                        is_winning=int(rank) <= inventory)
    if session.my_price is not None:  # PostgreSQL has a bid, Redis cannot rank it right now
        return Standing(session=session, status=status, price=session.my_price, rank=None, is_winning=None)
    return None  # no bid in this session
