"""persist_bids' writer (auctions.persistence) on edge cases the system tests do not reach: users
removed while their bids wait in the stream, a bidder's deletion refused, and a session's deletion
cascading to the history, which has no database-level foreign keys (auctions.models.BidEvent says
why)."""

import pytest
from django.db import connection
from django.db.models import ProtectedError

from accounts.models import User
from auctions import live, persistence
from auctions.models import Bid, BidEvent
from core.redis import get_redis
from tests import bidding

pytestmark = pytest.mark.django_db(transaction=True)


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
