"""The "My bids" page (auctions.views.my_bids over selectors.bidder_standings): the sessions a
signed-in bidder bid in, their live price and rank while open (Redis, even before the bid is
persisted), the settled outcome, what they won at what final price; one SQL query for the list."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.user_cache import CurrentUser
from auctions import live, persistence, settlement
from auctions.models import BiddingSession
from core.redis import get_redis
from tests import bidding

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]


def as_bidder(user) -> CurrentUser:
    return CurrentUser(id=str(user.pk), username=user.username, weight=user.weight, is_admin=False,
                       is_active=True, token_version=user.token_version, session_hash="")


def end_and_settle(session) -> None:
    ended = timezone.now()
    BiddingSession.objects.filter(pk=session.pk).update(end_time=ended, scheduled_end_time=ended)
    live.params_store(BiddingSession.objects.get(pk=session.pk))
    assert settlement.session_settle(session_id=str(session.pk)) is not None


def row(page: str, session) -> str:
    found = re.search(rf'<tr data-session="{session.pk}".*?</tr>', page, flags=re.S)
    assert found, f"no row for {session.pk}"
    return re.sub(r"\s+", " ", found.group(0))


@pytest.fixture
def me(make_user):
    return make_user()


@pytest.fixture
def rival():
    return bidding.bidders(1)[0]


def test_my_bids_needs_a_login(client):
    response = client.get("/me/bids/")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/me/bids/")


def test_the_header_links_to_my_bids_when_signed_in(client, me):
    client.force_login(me)
    assert 'href="/me/bids/"' in client.get("/").content.decode()


@pytest.mark.django_db(transaction=True)  # two settlements, each draining in its own transaction
def test_my_bids_shows_live_standings_and_settled_outcomes(client, me, rival, make_session):
    winning = make_session(inventory=1)
    outbid = make_session(inventory=1)
    won = make_session(inventory=2)
    lost = make_session(inventory=1)
    not_mine = make_session()
    make_session(starts_in=600)  # scheduled: nobody has bid
    bidding.place(winning.pk, [(as_bidder(me), ["50.00"]), (rival, ["40.00"])], concurrency=1)
    bidding.place(outbid.pk, [(as_bidder(me), ["20.00"]), (rival, ["90.00"])], concurrency=1)
    bidding.place(won.pk, [(as_bidder(me), ["70.00"]), (rival, ["60.00"])], concurrency=1)
    bidding.place(lost.pk, [(as_bidder(me), ["30.00"]), (rival, ["80.00"])], concurrency=1)
    bidding.place(not_mine.pk, [(rival, ["15.00"])])
    end_and_settle(won)
    end_and_settle(lost)

    client.force_login(me)
    page = client.get("/me/bids/").content.decode()

    # The open sessions' bids are only in Redis (no persist tick ran): live price and rank.
    assert "50.00" in row(page, winning) and "#1" in row(page, winning) and "Winning" in row(page, winning)
    assert "20.00" in row(page, outbid) and "#2" in row(page, outbid) and "Outbid" in row(page, outbid)
    assert "Won" in row(page, won) and "#1" in row(page, won)
    assert "Not won" in row(page, lost) and "#2" in row(page, lost)
    assert str(not_mine.pk) not in page
    assert page.count('<tr data-session="') == 4
    # What I won, at the final price (the lowest price among the winners: the rival's 60.00).
    wins = page[page.index('id="my-wins"'):page.index('id="my-bids"')]
    assert won.product.name in wins and lost.product.name not in wins
    assert "you pay <strong>60.00</strong>" in wins and "you bid 70.00" in wins


def test_my_bids_lists_sessions_with_one_sql_query(client, me, rival, make_session):
    for inventory in (1, 2, 3):
        session = make_session(inventory=inventory)
        bidding.place(session.pk, [(as_bidder(me), ["25.00"])])
    settled = make_session(inventory=1)
    bidding.place(settled.pk, [(as_bidder(me), ["25.00"])])
    end_and_settle(settled)
    client.force_login(me)
    client.get("/me/bids/")  # warm: the login session and the user
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/me/bids/").content.decode()
    assert page.count('<tr data-session="') == 4
    auction_queries = [q["sql"] for q in queries.captured_queries if "auctions_" in q["sql"]]
    assert len(auction_queries) == 1, auction_queries


def test_my_bids_without_bids_says_so(client, me, make_session):
    make_session()
    client.force_login(me)
    page = client.get("/me/bids/").content.decode()
    assert "You have not bid yet" in page


def test_my_bids_restores_a_lost_live_state_to_rank_my_bid(client, me, rival, make_session):
    session = make_session(inventory=1)
    bidding.place(session.pk, [(as_bidder(me), ["33.00"]), (rival, ["44.00"])], concurrency=1)
    persistence.session_drain_completely(session_id=str(session.pk))
    get_redis().delete(*live.session_keys(session.pk).all())  # Redis lost the session (a flush, an eviction)
    client.force_login(me)
    line = row(client.get("/me/bids/").content.decode(), session)
    assert "33.00" in line and "#2" in line and "Outbid" in line
