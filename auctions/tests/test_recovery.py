"""auctions.recovery: a live state Redis lost (or holds older than PostgreSQL) is restored once,
with seq and version continuing upwards, and no bid is accepted onto a state that is not whole."""

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import call_command

from auctions import live, persistence, recovery
from auctions.models import BidEvent
from auctions.rules import to_us
from auctions.services import bid_place
from core.exceptions import ApplicationError, ErrorCode
from core.redis import get_redis, session_key
from tests import bidding

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def _bid(session, user, price: str):
    return async_to_sync(bid_place)(session_id=str(session.pk), user=user, price=Decimal(price))


def _forget_session(session) -> None:
    client = get_redis()
    names = list(client.scan_iter(match=session_key(session.pk, "*")))  # every node of a cluster; KEYS asks one
    assert names
    client.delete(*names)


def test_a_state_without_its_epoch_refuses_bids_until_restored(make_session):
    session = make_session(inventory=1)
    a, b = bidding.bidders(2)
    _bid(session, a, "20.00")
    _bid(session, b, "21.00")
    persistence.session_drain(session_id=str(session.pk))
    _forget_session(session)
    get_redis().hset(live.session_keys(session.pk).params, mapping=live.params_fields(session))  # params, no epoch

    assert not live.is_whole(session.pk)
    accepted = _bid(session, a, "30.00")  # restores first: the board knows b's 21.00 again

    assert live.is_whole(session.pk)
    assert accepted.rank == 1 and accepted.total_bidders == 2 and accepted.seq == 3
    with pytest.raises(ApplicationError) as refused:
        _bid(session, b, "20.50")
    assert refused.value.code == ErrorCode.NOT_HIGHER


def test_a_restore_never_lowers_seq_or_version(make_session):
    session = make_session()
    (user,) = bidding.bidders(1)
    first = _bid(session, user, "20.00")
    persistence.session_drain(session_id=str(session.pk))
    seq_before, version_before = live.counters(session.pk)

    restored = recovery.live_state_restore(session_id=session.pk)

    seq_after, version_after = live.counters(session.pk)
    assert restored == 1 and seq_after == seq_before == first.seq and version_after > version_before
    assert _bid(session, user, "21.00").seq == first.seq + 1


def test_a_request_waits_for_a_restore_under_way_then_answers_recovering(make_session, settings):
    session = make_session()
    (user,) = bidding.bidders(1)
    _forget_session(session)
    lock = get_redis().lock(session_key(session.pk, "restore"), timeout=30)
    assert lock.acquire(blocking=False)  # another process is restoring it (and takes too long)
    try:
        with pytest.raises(ApplicationError) as refused:
            _bid(session, user, "20.00")
        assert refused.value.code == ErrorCode.RECOVERING and refused.value.retry_after == 1
    finally:
        lock.release()
    assert _bid(session, user, "20.00").rank == 1


def test_a_closed_session_refuses_bids_whatever_its_end_says(make_session):
    session = make_session()
    (user,) = bidding.bidders(1)
    _bid(session, user, "20.00")
    assert live.close(session.pk, end_us=to_us(session.end_time)) == (False, to_us(session.end_time))  # not yet
    assert _bid(session, user, "20.50").rank == 1
    # The flag as settlement leaves it (an admin may still move the end later, see below).
    get_redis().hset(live.session_keys(session.pk).params, "closed", "1")
    with pytest.raises(ApplicationError) as refused:
        _bid(session, user, "21.00")
    assert refused.value.code == ErrorCode.SESSION_ENDED
    live.reopen(session.pk)
    assert _bid(session, user, "21.00").rank == 1


def test_a_bid_whose_seq_postgresql_holds_for_another_bid_is_kept_under_a_new_seq(make_session):
    session = make_session(inventory=2)
    a, b, c = bidding.bidders(3)
    _bid(session, a, "20.00")
    _bid(session, b, "21.00")
    persistence.session_drain(session_id=str(session.pk))
    # Redis comes back older than PostgreSQL: it hands out seq 2 again, to a different bid.
    get_redis().hset(live.session_keys(session.pk).meta, "seq", 1)
    reused = _bid(session, c, "22.00")
    assert reused.seq == 2

    report = persistence.session_drain(session_id=str(session.pk))

    events = {e.seq: (str(e.bidder_id), e.price) for e in BidEvent.objects.filter(session=session)}
    assert events == {1: (a.id, Decimal("20.00")), 2: (b.id, Decimal("21.00")), 3: (c.id, Decimal("22.00"))}
    assert str(session.pk) in report.behind
    assert live.counters(session.pk)[0] >= 3  # Redis hands out no seq PostgreSQL holds
    # The same entry written again (a crash before its acknowledgement) is not kept twice.
    persistence.entries_write(session_id=str(session.pk), entries=[("0-0", {
        "u": c.id, "p": "22.00", "s": repr(reused.score), "q": "2", "t": str(to_us(reused.accepted_at)),
        "w": "1.0"})])
    assert BidEvent.objects.filter(session=session).count() == 3


def test_the_persist_tick_restores_a_state_older_than_postgresql(make_session):
    session = make_session()
    a, b = bidding.bidders(2)
    _bid(session, a, "20.00")
    _bid(session, b, "21.00")
    persistence.session_drain(session_id=str(session.pk))
    keys = live.session_keys(session.pk)
    get_redis().hdel(keys.bids, b.id)  # Redis lost b's bid (and its seq) but is otherwise whole
    get_redis().zremrangebyrank(keys.rank, 0, 0)
    get_redis().hset(keys.meta, "seq", 1)

    report = recovery.persist_tick()

    assert str(session.pk) in report["restored"]
    assert get_redis().zcard(keys.rank) == 2 and live.counters(session.pk)[0] == 2


@pytest.mark.parametrize("lost_at", ["between_reads", "while_writing"])
def test_a_tick_during_which_redis_loses_a_session_drains_every_session_and_restores_it(make_session, monkeypatch,
                                                                                      lost_at):
    """Redis loses a session's keys (its stream and consumer group too) during a drain, as a
    FLUSHALL in a chaos run did: between two reads (the next read meets NOGROUP: the group is made
    again) or while a batch is being written to PostgreSQL (its acknowledgement and trim find no
    stream). The drain goes on, the tick's other session is drained, and the lost state is
    restored in the same tick."""
    lost, other = make_session(), make_session()
    a, b = bidding.bidders(2)
    _bid(lost, a, "20.00")
    _bid(lost, b, "21.00")
    _bid(other, a, "30.00")
    name = "_apply" if lost_at == "between_reads" else "entries_write"
    step = getattr(persistence, name)

    def step_then_lose(*args, **kwargs):
        done = step(*args, **kwargs)
        session_id, entries = (kwargs["session_id"], kwargs["entries"]) if kwargs else (args[2], args[3])
        if session_id == str(lost.pk) and entries:
            _forget_session(lost)  # written to PostgreSQL, then gone from Redis
        return done

    monkeypatch.setattr(persistence, name, step_then_lose)

    report = recovery.persist_tick(session_ids=[str(lost.pk), str(other.pk)])

    assert sorted(report["drained"]) == sorted([str(lost.pk), str(other.pk)])
    assert report["events"] == 3 and report["restored"] == [str(lost.pk)]
    assert BidEvent.objects.filter(session=lost).count() == 2 and BidEvent.objects.filter(session=other).count() == 1
    assert live.is_whole(lost.pk) and get_redis().zcard(live.session_keys(lost.pk).rank) == 2
    assert _bid(lost, a, "25.00").seq == 3


def test_rebuild_leaderboard_drains_first_and_bidding_goes_on(make_session):
    session = make_session()
    users = bidding.bidders(3)
    accepted = [_bid(session, user, "20.00") for user in users]  # in the stream, not yet in PostgreSQL

    call_command("rebuild_leaderboard", str(session.pk))

    assert BidEvent.objects.filter(session=session).count() == 3
    assert get_redis().zcard(live.session_keys(session.pk).rank) == 3
    assert _bid(session, users[0], "25.00").seq == max(r.seq for r in accepted) + 1


async def test_concurrent_first_requests_restore_once(make_session):
    session = await sync_to_async(make_session)()
    users = await sync_to_async(bidding.bidders)(20)
    before = recovery.LIVE_STATE_RESTORES.labels("not_whole")._value.get()
    results = await asyncio.gather(*(bid_place(session_id=str(session.pk), user=u, price=Decimal("20.00"))
                                     for u in users))
    assert sorted(r.seq for r in results) == list(range(1, 21))
    assert recovery.LIVE_STATE_RESTORES.labels("not_whole")._value.get() == before + 1
