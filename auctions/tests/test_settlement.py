"""Settlement: equal to an independent computation (auctions.rules.settle over the accepted bid
replies), exactly once under races, and on time with the default beat schedule. The system tests
run real Celery workers and beats (tests.processes)."""

import re
import threading

import pytest

from auctions import live, persistence, settlement
from auctions.models import BiddingSession, BidEvent, Ranking
from auctions.rules import to_us
from core.redis import get_redis
from tests import bidding, processes

# Every test but the schedule's also runs with the engine on a Redis Cluster (pytest.mark.cluster).
pytestmark = [pytest.mark.django_db(transaction=True)]


def _wait_ended(*sessions) -> None:
    last_end = max(to_us(s.end_time) for s in sessions)
    processes.wait_until(lambda: live.redis_clock_us() >= last_end, 15, interval=0.05, message="sessions ended")


def _wait_settled(sessions, timeout: float) -> None:
    ids = [s.pk for s in sessions]
    processes.wait_until(
        lambda: BiddingSession.objects.filter(pk__in=ids, status="settled").count() == len(ids), timeout,
        interval=0.1, message=f"{len(ids)} session(s) settled")


def _settled_lines(*workers) -> list[str]:
    return [m for w in workers for m in re.findall(r"settled ([0-9a-f-]{36}):", w.log())]


@pytest.mark.system
@pytest.mark.cluster
def test_settlement_by_the_worker_equals_the_rules(started, make_session):
    """Four sessions end while a worker and beat run (settle every 1 s; the persist tick never
    comes, so the settlement drains the streams itself): the normal case with re-bids, fewer
    bidders than K, no bidders, and equal scores (beta=0, same price and weight)."""
    env = {"SETTLE_INTERVAL_SECONDS": "1", "PERSIST_INTERVAL_SECONDS": "3600"}
    worker = started(processes.celery_worker, **env)
    started(processes.celery_beat, **env)
    many, few, tied = bidding.bidders(40), bidding.bidders(3), bidding.bidders(6, weight=1.5)
    worker.wait_for_log("ready.")

    normal = make_session(starts_in=-5, lasts=8, inventory=5, alpha=1.0, beta=50.0, gamma=3.0)
    fewer = make_session(starts_in=-5, lasts=8, inventory=10, alpha=1.0, beta=5.0, gamma=1.0)
    empty = make_session(starts_in=-5, lasts=8, inventory=3)
    ties = make_session(starts_in=-5, lasts=8, inventory=3, alpha=2.0, beta=0.0, gamma=4.0)
    replies = {
        normal.pk: bidding.place(normal.pk, [(u, [f"{30 + n * 7 % 50}.25"] + ([f"{90 + n}.00"] if n % 3 == 0 else []))
                                             for n, u in enumerate(many)]),
        fewer.pk: bidding.place(fewer.pk, [(u, [f"{15 + n}.00"]) for n, u in enumerate(few)]),
        ties.pk: bidding.place(ties.pk, [(u, ["20.00"]) for u in tied], concurrency=1),
    }
    assert all(not rejected for _, rejected in replies.values())
    assert len(replies[normal.pk][0]) == 40 + 14
    assert len({r.score for r in replies[ties.pk][0]}) == 1  # truly equal scores

    _wait_settled([normal, fewer, empty, ties], 20)
    for session in (normal, fewer, empty, ties):
        accepted = replies.get(session.pk, ([], []))[0]
        bidding.assert_settled_as_expected(session, accepted)
        assert not bidding.mismatch(session.pk, accepted)  # the drained history is complete too

    normal.refresh_from_db(); fewer.refresh_from_db(); empty.refresh_from_db(); ties.refresh_from_db()  # noqa: E702
    assert Ranking.objects.filter(session=normal, is_winner=True).count() == 5
    assert Ranking.objects.filter(session=fewer, is_winner=True).count() == 3
    assert fewer.final_price == min(r.price for r in replies[fewer.pk][0])  # the last ranked bid's price
    assert empty.final_price is None and not Ranking.objects.filter(session=empty).exists()
    tie_ranking = list(Ranking.objects.filter(session=ties).order_by("rank").values_list("seq", flat=True))
    assert tie_ranking == sorted(r.seq for r in replies[ties.pk][0])  # earlier bid first
    assert ties.final_price is not None and str(ties.final_price) == "20.00"
    assert sorted(_settled_lines(worker)) == sorted(str(s.pk) for s in (normal, fewer, empty, ties))


@pytest.mark.cluster
def test_concurrent_settlements_from_threads_settle_once(make_session):
    """Eight threads call session_settle at the same moment (and one runs a persist tick) on an
    ended session whose stream is not drained yet: one settlement, unique rankings, nothing lost."""
    users = bidding.bidders(300)
    session = make_session(starts_in=-5, lasts=7, inventory=20, alpha=1.0, beta=10.0, gamma=1.0)
    plan = [(u, [f"{20 + n}.00", f"{500 + n}.00"] if n % 2 else [f"{20 + n}.00"]) for n, u in enumerate(users)]
    accepted, rejected = bidding.place(session.pk, plan)
    assert len(accepted) == 450 and not rejected
    _wait_ended(session)

    from django.db import connection

    barrier = threading.Barrier(9)
    outcomes, errors = [], []

    def settle_one():
        try:
            barrier.wait()
            outcomes.append(settlement.session_settle(session_id=str(session.pk)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    def persist_one():
        try:
            barrier.wait()
            persistence.bids_persist_all()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=settle_one) for _ in range(8)] + [threading.Thread(target=persist_one)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(1 for o in outcomes if o is not None) == 1
    assert len(outcomes) == 8
    bidding.assert_settled_as_expected(session, accepted)
    ranks = list(Ranking.objects.filter(session=session).values_list("rank", "bidder_id"))
    assert len(ranks) == 300 == len({r for r, _ in ranks}) == len({b for _, b in ranks})
    assert not bidding.mismatch(session.pk, accepted)


@pytest.mark.cluster
def test_settlement_claims_entries_another_consumer_is_still_writing(make_session, monkeypatch):
    """A persist tick reads the session's last entries at the moment the settlement's own drain
    has passed its reclaim step: the settlement must wait for / claim them, not settle on the
    older Bid rows PostgreSQL holds."""
    users = bidding.bidders(30)
    session = make_session(starts_in=-5, lasts=6, inventory=5)
    first, _ = bidding.place(session.pk, [(u, [f"{20 + n}.00"]) for n, u in enumerate(users)])
    persistence.session_drain(session_id=str(session.pk))
    assert BidEvent.objects.filter(session=session).count() == 30
    # The last ten bidders raise their bids to the top; those entries are not persisted yet.
    raised, _ = bidding.place(session.pk, [(u, [f"{900 + n}.00"]) for n, u in enumerate(users[-10:])])
    accepted = first + raised
    _wait_ended(session)

    client = get_redis()
    stream = live.session_keys(session.pk).stream
    real_xautoclaim = client.xautoclaim
    taken = []

    def xautoclaim_then_a_tick_reads(*args, **kwargs):
        reply = real_xautoclaim(*args, **kwargs)
        if not taken:  # another worker's persist tick takes the new entries now, and is slow
            got = client.xreadgroup(persistence.PERSIST_GROUP, "other-worker", {stream: ">"}, count=1000)
            taken.extend(got[0][1] if got else [])
        return reply

    monkeypatch.setattr(client, "xautoclaim", xautoclaim_then_a_tick_reads)
    outcome = settlement.session_settle(session_id=str(session.pk))
    assert len(taken) == 10 and outcome is not None
    bidding.assert_settled_as_expected(session, accepted)
    assert not bidding.mismatch(session.pk, accepted)
    # Written from the stream entries themselves (with the bid's weight), not rebuilt from the
    # live hash by the lost-entry fallback.
    weights = {u.id: u.weight for u in users}
    assert all(weights[str(bidder)] == weight for bidder, weight in
               BidEvent.objects.filter(session=session).values_list("bidder_id", "weight"))


@pytest.mark.system
@pytest.mark.cluster
def test_two_workers_and_two_beats_settle_each_session_once(started, make_session):
    env = {"SETTLE_INTERVAL_SECONDS": "1", "PERSIST_INTERVAL_SECONDS": "1"}
    workers = [started(processes.celery_worker, name=f"w{n}", **env) for n in (1, 2)]
    for n in (1, 2):
        started(processes.celery_beat, name=f"beat{n}", **env)
    users = bidding.bidders(200)
    for w in workers:
        w.wait_for_log("ready.")
    sessions = [make_session(starts_in=-5, lasts=7 + n, inventory=7, alpha=1.0, beta=20.0, gamma=1.0)
                for n in range(3)]
    replies = {s.pk: bidding.place(s.pk, [(u, [f"{11 + (n * 13 + i) % 400}.00"]) for i, u in enumerate(users)])[0]
               for n, s in enumerate(sessions)}
    _wait_settled(sessions, 20)
    for session in sessions:
        bidding.assert_settled_as_expected(session, replies[session.pk])
        assert not bidding.mismatch(session.pk, replies[session.pk])
        assert Ranking.objects.filter(session=session).count() == 200
    # Both workers took ticks; each session was settled by exactly one of them, once.
    processes.wait_until(lambda: all("settle_sessions" in w.log() for w in workers), 10, message="both ticking")
    assert sorted(_settled_lines(*workers)) == sorted(str(s.pk) for s in sessions)
    for w in workers:
        assert "raised unexpected" not in w.log() and "failed" not in w.log()


@pytest.mark.system
def test_settled_within_15_seconds_of_the_end_with_the_default_schedule(started, make_session, settings):
    assert settings.SETTLE_INTERVAL_SECONDS == 10  # the default schedule, not a test override
    worker = started(processes.celery_worker)
    started(processes.celery_beat)
    users = bidding.bidders(50)
    worker.wait_for_log("ready.")
    session = make_session(starts_in=-5, lasts=7, inventory=5)
    accepted, _ = bidding.place(session.pk, [(u, [f"{20 + n}.00"]) for n, u in enumerate(users)])
    _wait_settled([session], 25)
    session.refresh_from_db()
    lag = (session.settled_at - session.end_time).total_seconds()
    print(f"\nsettled {lag:.2f} s after end_time (SETTLE_INTERVAL_SECONDS=10)")
    assert 0 <= lag <= 15
    bidding.assert_settled_as_expected(session, accepted)


@pytest.mark.cluster
def test_two_workers_given_the_same_ended_sessions_split_them_and_settle_each_once(make_session):
    users = bidding.bidders(5)
    sessions = [make_session(starts_in=-5, lasts=6, inventory=2) for _ in range(16)]
    placed = bidding.place_in_sessions({s.pk: [(u, [f"{20 + n}.00"]) for n, u in enumerate(users)]
                                        for s in sessions})
    _wait_ended(*sessions)
    ids = settlement.sessions_due(limit=100)
    assert sorted(ids) == sorted(str(s.pk) for s in sessions)

    settled = bidding.at_once(lambda: settlement.sessions_settle(ids))
    print(f"\nsettled by one worker: {len(settled[0])}, by the other: {len(settled[1])}")
    assert settled[0] and settled[1] and not set(settled[0]) & set(settled[1])
    assert sorted(settled[0] + settled[1]) == sorted(ids)
    for session in sessions:
        bidding.assert_settled_as_expected(session, placed[session.pk][0])


@pytest.mark.cluster
def test_a_tick_settles_a_bounded_share_and_hands_the_rest_out(make_session, settings):
    settings.SETTLE_SESSIONS_PER_TICK = 7
    settings.SETTLE_SESSIONS_PER_TASK = 3
    sessions = [make_session(starts_in=-5, lasts=1 + n / 100) for n in range(9)]  # ends in this order
    _wait_ended(*sessions)
    handed_out = []
    settled = settlement.sessions_settle_due(share_out=handed_out.append)
    by_end = [str(s.pk) for s in sessions]
    assert settled == by_end[:3]  # the earliest ends, here
    assert handed_out == [by_end[3:6], by_end[6:7]]  # 7 per tick: the last two wait for the next
    assert BiddingSession.objects.filter(status="settled").count() == 3
