"""Soft close (anti-sniping) end to end on real Redis and PostgreSQL: the extension happens inside
the bid script (auctions/lua/place_bid.lua) by the contract's rule, only for accepted bids ranking
within the top K in the window, never past the hard end; every reader follows the effective end
(answers, meta, the session object), PostgreSQL follows through the write-behind, and the
settlement waits for the effective end, includes the late bids and passes the audit."""

import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from auctions import live, persistence, recovery, settlement
from auctions.models import BiddingSession, BidEvent
from auctions.rules import end_after_bid, to_us
from auctions.selectors import session_get
from auctions.services import bid_place
from auctions.verification import session_audit
from core.exceptions import ApplicationError, ErrorCode
from core.redis import get_redis
from leaderboard.selectors import leaderboard_meta
from tests import bidding, processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def _bid(session, user, price: str):
    return async_to_sync(bid_place)(session_id=str(session.pk), user=user, price=Decimal(price))


def _refusal(session, user, price: str) -> str:
    with pytest.raises(ApplicationError) as refused:
        _bid(session, user, price)
    return refused.value.code


def _live_end_us(session) -> int:
    end_us, ext_us = get_redis().hmget(live.session_keys(session.pk).params, "end_us", "ext_us")
    return max(int(end_us), int(ext_us or 0))


def _soft(make_session, *, ends_in: float, window: int = 60, by: int = 30, inventory: int = 2,
          hard_in: float | None = None, **extra):
    start = -60
    hard = {"hard_end_time": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=hard_in)} if hard_in else {}
    return make_session(starts_in=start, lasts=-start + ends_in, inventory=inventory, extend_window_seconds=window,
                        extend_by_seconds=by, **hard, **extra)


def test_a_winning_bid_in_the_window_moves_the_end_to_its_time_plus_the_extension(make_session):
    session = _soft(make_session, ends_in=20, window=60, by=30)
    (a,) = bidding.bidders(1)
    scheduled_us = to_us(session.end_time)
    accepted = _bid(session, a, "20.00")
    accepted_us = to_us(accepted.accepted_at)
    assert accepted.extended and accepted.end_us == accepted_us + 30_000_000 > scheduled_us
    assert _live_end_us(session) == accepted.end_us
    # Every reader: the meta, the session object (before PostgreSQL has it), the board.
    meta = async_to_sync(leaderboard_meta)(session_id=session.pk)
    assert to_us(meta["end_time"]) == accepted.end_us
    assert to_us(session_get(session_id=session.pk).end_time) == accepted.end_us
    assert BiddingSession.objects.get(pk=session.pk).scheduled_end_time == session.end_time


def test_bids_outside_the_window_below_k_or_refused_never_extend(make_session):
    far = _soft(make_session, ends_in=120, window=60, by=30)  # 120 s left: outside a 60 s window
    a, b, c, d = bidding.bidders(4)
    assert not _bid(far, a, "20.00").extended
    assert _live_end_us(far) == to_us(far.end_time)

    session = _soft(make_session, ends_in=20, window=60, by=30, inventory=2)
    _bid(session, a, "50.00")
    _bid(session, b, "40.00")
    end_us = _live_end_us(session)
    # Ranks 3rd (K = 2): accepted, but no extension.
    third = _bid(session, c, "30.00")
    assert third.rank == 3 and not third.extended and _live_end_us(session) == end_us
    # Refused bids: below the upset price, not higher than one's own, rate limited.
    assert _refusal(session, d, "5.00") == ErrorCode.BELOW_UPSET_PRICE
    assert _refusal(session, a, "50.00") == ErrorCode.NOT_HIGHER
    assert _live_end_us(session) == end_us
    # Only the extending bids' stream entries carry the new end (a's and b's: within K, in the window).
    entries = get_redis().xrange(live.session_keys(session.pk).stream)
    assert [f["u"] for _, f in entries if "e" in f] == [a.id, b.id]


def test_an_extension_never_goes_past_the_hard_end_nor_moves_the_end_earlier(make_session):
    session = _soft(make_session, ends_in=20, window=60, by=40, hard_in=35)
    a, b = bidding.bidders(2)
    hard_us = to_us(BiddingSession.objects.get(pk=session.pk).hard_end_time)
    first = _bid(session, a, "20.00")
    assert first.extended and first.end_us == hard_us  # now + 40 s would pass the hard end
    second = _bid(session, b, "30.00")
    assert not second.extended and _live_end_us(session) == hard_us

    short = _soft(make_session, ends_in=20, window=60, by=5)  # now + 5 s is before the end: no move
    assert not _bid(short, a, "20.00").extended
    assert _live_end_us(short) == to_us(short.end_time)


def test_the_rule_in_the_script_is_the_pure_rule(make_session):
    session = _soft(make_session, ends_in=10, window=30, by=20, inventory=2)
    bidders = bidding.bidders(5)
    end_us = to_us(session.end_time)
    for user, price in zip(bidders, ["20.00", "25.00", "15.00", "30.00", "12.00"], strict=True):
        accepted = _bid(session, user, price)
        end_us = end_after_bid(end_us=end_us, accepted_us=to_us(accepted.accepted_at), rank=accepted.rank,
                               inventory=2, window_s=30, by_s=20, hard_end_us=None)
        assert accepted.end_us == end_us


def test_bids_after_the_scheduled_end_are_taken_until_the_effective_end_then_settled_with_them(make_session):
    session = _soft(make_session, ends_in=1.5, window=10, by=3, inventory=1)
    a, b = bidding.bidders(2)
    scheduled_us = to_us(session.end_time)
    _bid(session, a, "20.00")  # extends to now + 3 s
    processes.wait_until(lambda: live.redis_clock_us() > scheduled_us, 5, interval=0.05, message="scheduled end")
    late = _bid(session, b, "30.00")  # after the scheduled end, before the effective one: taken, extends
    assert late.accepted_at > session.end_time and late.extended and late.is_winning
    # The settlement waits for the effective end, even before PostgreSQL has heard of it.
    with pytest.raises(ApplicationError) as early:
        settlement.session_settle(session_id=str(session.pk))
    assert early.value.code == ErrorCode.SESSION_NOT_ENDED
    assert to_us(BiddingSession.objects.get(pk=session.pk).end_time) == late.end_us  # recorded on the way
    processes.wait_until(lambda: live.redis_clock_us() >= late.end_us, 10, interval=0.05, message="effective end")
    assert _refusal(session, a, "40.00") == ErrorCode.SESSION_ENDED
    outcome = settlement.session_settle(session_id=str(session.pk))
    assert outcome is not None and outcome.winners == 1
    settled = BiddingSession.objects.get(pk=session.pk)
    assert settled.final_price == Decimal("30.00") and to_us(settled.end_time) == late.end_us
    assert BidEvent.objects.filter(session=session).count() == 2
    assert session_audit(session_id=session.pk) is None  # the replay reaches the same effective end


def test_the_write_behind_carries_the_extension_to_postgresql(make_session):
    session = _soft(make_session, ends_in=20, window=60, by=30)
    (a,) = bidding.bidders(1)
    accepted = _bid(session, a, "20.00")
    persistence.session_drain(session_id=str(session.pk))
    row = BiddingSession.objects.get(pk=session.pk)
    assert to_us(row.end_time) == accepted.end_us and row.scheduled_end_time == session.end_time
    # An extension is not a change of terms: nothing on the audit trail.
    from history.selectors import audit_trail
    assert [c.action for c in audit_trail(model="session", object_id=str(session.pk))] == ["create"]


def test_a_restore_from_postgresql_keeps_the_persisted_extension(make_session):
    session = _soft(make_session, ends_in=20, window=60, by=30)
    (a,) = bidding.bidders(1)
    accepted = _bid(session, a, "20.00")
    persistence.session_drain(session_id=str(session.pk))
    get_redis().delete(*live.session_keys(session.pk).all())  # Redis loses the session
    assert recovery.live_state_ensure(session_id=session.pk) == "restored"
    assert _live_end_us(session) == accepted.end_us


def test_the_audit_fails_an_effective_end_the_rules_do_not_reach(make_session):
    session = _soft(make_session, ends_in=1, window=5, by=2, inventory=1)
    (a,) = bidding.bidders(1)
    _bid(session, a, "20.00")
    processes.wait_until(lambda: live.redis_clock_us() >= _live_end_us(session), 10, interval=0.05,
                         message="effective end")
    settlement.session_settle(session_id=str(session.pk))
    assert session_audit(session_id=session.pk) is None
    tampered = BiddingSession.objects.get(pk=session.pk)
    BiddingSession.objects.filter(pk=session.pk).update(end_time=tampered.end_time + dt.timedelta(seconds=1))
    assert session_audit(session_id=session.pk).startswith("effective end")
