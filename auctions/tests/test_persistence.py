"""persist_bids' writer (auctions.persistence) on edge cases the system tests do not reach: users
removed while their bids wait in the stream, a bidder's deletion refused, and a session's deletion
cascading to the history, which has no database-level foreign keys (auctions.models.BidEvent says
why); drainers sharing sessions, each session drained by one at a time (its drain lease); the
periodic drain's pauses between batches."""

import select

import pytest
from django.db import connection
from django.db.models import ProtectedError

from accounts.models import User
from auctions import live, persistence
from auctions.models import Bid, BidEvent
from core.redis import get_redis
from tests import bidding

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def test_entries_of_a_user_removed_behind_djangos_back_are_skipped_and_acknowledged(make_session):
    session = make_session()
    users = bidding.bidders(3)
    accepted, _ = bidding.place(session.pk, [(user, ["20.00", "21.00"]) for user in users])
    assert len(accepted) == 6
    # Django refuses to delete a bidder (see the next test); only SQL can remove one.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM accounts_user WHERE id = %s", [users[0].id])

    report = persistence.session_drain(session_id=str(session.pk))

    assert report.events == 4 and report.bids == 2
    assert {str(b) for b in Bid.objects.filter(session=session).values_list("bidder_id", flat=True)} == {
        u.id for u in users[1:]}
    stored = {str(b) for b in BidEvent.objects.filter(session=session).values_list("bidder_id", flat=True)}
    assert stored == {u.id for u in users[1:]}
    assert get_redis().xlen(live.session_keys(session.pk).stream) == 0  # nothing left to retry forever


def test_a_bidder_cannot_be_deleted_and_deleting_a_session_deletes_its_history(make_session):
    session, other = make_session(), make_session()
    users = bidding.bidders(2)
    for s in (session, other):
        bidding.place(s.pk, [(user, ["20.00"]) for user in users])
        persistence.session_drain(session_id=str(s.pk))
    assert BidEvent.objects.count() == 4

    with pytest.raises(ProtectedError):
        User.objects.filter(pk=users[0].id).delete()
    assert User.objects.filter(pk=users[0].id).exists()
    assert sorted(str(b) for b in BidEvent.objects.values_list("bidder_id", flat=True)) == sorted(
        [users[0].id, users[1].id] * 2)
    session.delete()
    assert list(BidEvent.objects.values_list("session_id", flat=True)) == [other.pk] * 2


def test_two_processes_given_the_same_sessions_drain_each_one_alone(make_session, monkeypatch):
    """Two drainers run sessions_persist over the same 40 sessions at once (batches of 3 entries,
    so that a session takes several): every session's entries are written by exactly one of them
    (its lease), both write some, nothing is lost or written twice."""
    monkeypatch.setattr(persistence, "BATCH_SIZE", 3)
    sessions = [make_session() for _ in range(40)]
    users = bidding.bidders(4)
    placed = bidding.place_in_sessions({s.pk: [(u, ["20.00", "30.00"]) for u in users] for s in sessions})
    assert all(len(accepted) == 8 and not rejected for accepted, rejected in placed.values())
    ids = [str(s.pk) for s in sessions]

    reports = bidding.at_once(lambda: persistence.sessions_persist(ids))
    a, b = (set(report.sessions) for report in reports)
    print(f"\nsessions written by one drainer: {len(a)}, by the other: {len(b)}")
    assert a and b and not a & b and a | b == set(ids)
    assert sum(report.events for report in reports) == 40 * 8 == BidEvent.objects.count()
    for session in sessions:
        assert not bidding.mismatch(session.pk, placed[session.pk][0])


def test_a_session_whose_drain_lease_is_held_elsewhere_is_left_to_its_holder(make_session):
    session, other = make_session(), make_session()
    users = bidding.bidders(2)
    bidding.place_in_sessions({s.pk: [(u, ["20.00"]) for u in users] for s in (session, other)})
    lease = persistence.drain_lease(session.pk)
    assert lease.acquire()
    report = persistence.sessions_persist([str(session.pk), str(other.pk)])
    assert report.busy == [str(session.pk)] and report.drained == [str(other.pk)]
    assert not BidEvent.objects.filter(session=session).exists()
    lease.release()
    assert persistence.sessions_persist([str(session.pk)]).events == 2
def test_written_entries_leave_the_stream_and_entries_pending_on_another_consumer_stay(make_session, monkeypatch):
    """The stream is trimmed below the first entry still pending anywhere (lua/stream_trim.lua):
    what PostgreSQL holds goes, what another consumer read and has not written yet stays, and so
    does what was written after it, until it is written too."""
    session = make_session()
    users = bidding.bidders(6)
    client, stream = get_redis(), live.session_keys(session.pk).stream
    monkeypatch.setattr(persistence, "BATCH_SIZE", 1)  # one entry per batch: a trim after each
    bidding.place(session.pk, [(user, ["20.00"]) for user in users[:2]])
    persistence.session_drain(session_id=str(session.pk))
    assert client.xlen(stream) == 0
    # Another worker reads the next two entries and does not write them (yet, or ever).
    bidding.place(session.pk, [(user, ["20.00"]) for user in users[2:4]])
    held = [entry_id for entry_id, _ in
            client.xreadgroup(persistence.PERSIST_GROUP, "other-worker", {stream: ">"}, count=2)[0][1]]
    bidding.place(session.pk, [(user, ["20.00"]) for user in users[4:]])

    persistence.session_drain(session_id=str(session.pk))  # reclaims nothing: not idle for 30 s yet

    assert BidEvent.objects.filter(session=session).count() == 4
    assert [entry_id for entry_id, _ in client.xrange(stream)][:2] == held and client.xlen(stream) == 4
    persistence.session_drain(session_id=str(session.pk), reclaim_idle_ms=0)  # the other worker died
    assert BidEvent.objects.filter(session=session).count() == 6
    assert client.xlen(stream) == 0 and client.xpending(stream, persistence.PERSIST_GROUP)["pending"] == 0


def test_a_periodic_drain_pauses_after_each_batch_unless_its_stream_is_behind(make_session, monkeypatch, settings):
    """sessions_persist (the persist tick) pauses after each batch as long as the batch took
    (PERSIST_YIELD_RATIO 1), so that PostgreSQL's share of a tick comes in bursts of one batch,
    however long the stream (a heavy tick is not a backlog); a stream whose oldest entry was
    PERSIST_YIELD_LAG_SECONDS old or more when the drain began is drained without pauses (it is
    behind: catching up comes first). The pauses are recorded here, not slept."""
    monkeypatch.setattr(persistence, "BATCH_SIZE", 4)
    pauses: list[float] = []
    monkeypatch.setattr(persistence.time, "sleep", pauses.append)
    users = bidding.bidders(4)
    settings.PERSIST_YIELD_RATIO = 1.0
    settings.PERSIST_YIELD_LAG_SECONDS = 1.0
    for expected in ("pauses", "behind"):
        session = make_session()
        placed = bidding.place_in_sessions({session.pk: [(u, ["20.00", "30.00", "40.00", "50.00"]) for u in users]})
        if expected == "behind":
            # By Redis's clock (the entries' ids are its milliseconds); this module's sleep is patched.
            began = persistence._redis_now_ms(get_redis())
            while persistence._redis_now_ms(get_redis()) - began < 1_100:
                select.select([], [], [], 0.05)
        pauses.clear()
        report = persistence.sessions_persist([str(session.pk)])
        assert report.events == len(placed[session.pk][0])
        if expected == "pauses":  # 16 entries, well under a second old: four batches, a pause
            # after each (and one after the reclaim pass, which found nothing to take over)
            assert len(pauses) >= 4 and all(0 < p <= persistence.YIELD_PAUSE_MAX_SECONDS for p in pauses), pauses
        else:  # the oldest entry over a second old: drained flat out
            assert pauses == []
        assert not bidding.mismatch(session.pk, placed[session.pk][0])
