"""Auction reads: sessions for the API and pages."""

from django.db.models import QuerySet
from django.utils import timezone

from auctions import live
from auctions.models import Bid, BiddingSession, BidEvent, Ranking, SessionStatus, status_q
from core.redis import get_redis


def sessions_list(*, status: str | None = None, limit: int = 100) -> QuerySet[BiddingSession]:
    sessions = BiddingSession.objects.select_related("product").order_by("-start_time")
    if status is not None:
        sessions = sessions.filter(status_q(status, timezone.now()))
    return sessions[:limit]


def session_get(*, session_id) -> BiddingSession | None:
    return BiddingSession.objects.select_related("product").filter(pk=session_id).first()


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
