"""The leaderboard API (leaderboard.api): board pages with ETags, the meta, my bid; bad pages and
unknown sessions are a 4xx with exactly {"detail", "code"}."""

import uuid

import pytest
from asgiref.sync import sync_to_async

from tests.assertions import assert_error, bids_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


@pytest.fixture
def bidder(make_user):
    return make_user()


@pytest.fixture
def session(make_session):
    return make_session(upset_price="10.00")


@pytest.fixture
def users(make_user):
    def make(n: int, **kwargs):
        return [make_user(**kwargs) for _ in range(n)]

    return make


async def test_leaderboard_pages_etag_and_meta(api, make_session, users, auth_header):
    session = await sync_to_async(make_session)(inventory=2)
    bidders = await sync_to_async(users)(5)
    for i, user in enumerate(bidders):
        await api.post(bids_url(session), json={"price": f"{20 + i}.00"}, headers=auth_header(user))
    page2 = await api.get(f"/api/sessions/{session.pk}/leaderboard?page=2&page_size=2")
    body = page2.json()
    assert [e["rank"] for e in body["entries"]] == [3, 4]
    assert body["total_pages"] == 3 and body["total_bidders"] == 5
    assert [e["username"] for e in body["entries"]] == [bidders[2].username, bidders[1].username]
    etag = page2.headers["ETag"]
    same = await api.get(f"/api/sessions/{session.pk}/leaderboard?page=2&page_size=2",
                         headers={"If-None-Match": etag})
    assert same.status_code == 304
    await api.post(bids_url(session), json={"price": "99.00"}, headers=auth_header(bidders[0]))
    changed = await api.get(f"/api/sessions/{session.pk}/leaderboard?page=2&page_size=2",
                            headers={"If-None-Match": etag})
    assert changed.status_code == 200
    meta = (await api.get(f"/api/sessions/{session.pk}/leaderboard/meta")).json()
    assert set(meta) == {"version", "status", "total_bidders", "threshold_score", "highest_price", "end_time",
                         "server_time"}
    assert meta["highest_price"] == "99.00" and meta["status"] == "active"
    mine = (await api.get(f"/api/sessions/{session.pk}/bids/me", headers=auth_header(bidders[0]))).json()
    assert mine == {"price": "99.00", "score": 99.0, "rank": 1, "is_winning": True, "price_to_win": None}
    (outsider,) = await sync_to_async(users)(1)
    none = await api.get(f"/api/sessions/{session.pk}/bids/me", headers=auth_header(outsider))
    assert none.status_code == 404 and none.json()["code"] == "no_bid"


@pytest.mark.parametrize("query", ["page_size=201", "page_size=0", "page=0", "page=-1", "page=abc",
                                   "page=99999999999999999999"])
async def test_leaderboard_with_a_bad_page_is_invalid(api, session, query):
    assert_error(await api.get(f"/api/sessions/{session.pk}/leaderboard?{query}"), 422, "invalid")


@pytest.mark.parametrize("suffix", ["/leaderboard", "/leaderboard/meta"])
async def test_get_of_an_unknown_session_is_not_found(api, suffix):
    assert_error(await api.get(f"/api/sessions/{uuid.uuid4()}{suffix}"), 404, "not_found")


async def test_my_bid_without_a_bid_is_no_bid(api, session, bidder, auth_header):
    response = await api.get(f"/api/sessions/{session.pk}/bids/me", headers=auth_header(bidder))
    assert_error(response, 404, "no_bid")
