"""persist_bids' writer (auctions.persistence) on edge cases the system tests do not reach: users
deleted while their bids wait in the stream, and deletes cascading to the history, which has no
database-level foreign keys (auctions.models.BidEvent says why)."""

import pytest

from accounts.models import User
from auctions import live, persistence
from auctions.models import Bid, BidEvent
from core.redis import get_redis
from tests import bidding

pytestmark = pytest.mark.django_db(transaction=True)


def test_entries_of_a_deleted_user_are_skipped_and_acknowledged(make_session):
    session = make_session()
    users = bidding.bidders(3)
    accepted, _ = bidding.place(session.pk, [(user, ["20.00", "21.00"]) for user in users])
    assert len(accepted) == 6
    User.objects.filter(pk=users[0].id).delete()

    report = persistence.session_drain(session_id=str(session.pk))

    assert report.events == 4 and report.bids == 2
    assert {str(b) for b in Bid.objects.filter(session=session).values_list("bidder_id", flat=True)} == {
        u.id for u in users[1:]}
    stored = {str(b) for b in BidEvent.objects.filter(session=session).values_list("bidder_id", flat=True)}
    assert stored == {u.id for u in users[1:]}
    assert get_redis().xlen(live.session_keys(session.pk).stream) == 0  # nothing left to retry forever


def test_deleting_a_user_or_a_session_deletes_their_history(make_session):
    session, other = make_session(), make_session()
    users = bidding.bidders(2)
    for s in (session, other):
        bidding.place(s.pk, [(user, ["20.00"]) for user in users])
        persistence.session_drain(session_id=str(s.pk))
    assert BidEvent.objects.count() == 4

    User.objects.filter(pk=users[0].id).delete()
    assert sorted(str(b) for b in BidEvent.objects.values_list("bidder_id", flat=True)) == [users[1].id] * 2
    session.delete()
    assert list(BidEvent.objects.values_list("session_id", flat=True)) == [other.pk]
