"""The price to win through the API (real ASGI app, Redis, PostgreSQL): in the bid answer, in a
`not_higher` refusal, in bids/me and in its 404 `no_bid` body; and bidding it wins."""

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from tests.assertions import assert_error, bids_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


async def test_a_bidder_told_the_price_to_win_who_bids_it_is_winning(api, make_session, users, auth_header):
    # beta > 0: a later bid scores less at the same price, so the price to win is above the K-th price.
    session = await sync_to_async(make_session)(inventory=2, alpha=1.0, beta=100.0, gamma=0.0, upset_price="10.00")
    a, b, c = await sync_to_async(users)(3)
    me = f"/api/sessions/{session.pk}/bids/me"

    nobody = await api.get(me, headers=auth_header(c))
    assert assert_error(nobody, 404, "no_bid")["price_to_win"] == "10.00"  # fewer than K bidders: the floor

    for user, price in ((a, "50.00"), (b, "40.00")):
        assert (await api.post(bids_url(session), json={"price": price}, headers=auth_header(user))).status_code == 201
    body = assert_error(await api.get(me, headers=auth_header(c)), 404, "no_bid")
    hint = Decimal(body["price_to_win"])
    assert hint > Decimal("40.00")  # b's 40.00 scored earlier, with more of beta's bonus

    low = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(c))
    assert low.status_code == 201
    low = low.json()
    assert low["is_winning"] is False and Decimal(low["price_to_win"]) >= hint
    mine = (await api.get(me, headers=auth_header(c))).json()
    assert mine["is_winning"] is False and Decimal(mine["price_to_win"]) > Decimal("20.00")

    again = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(c))
    assert Decimal(assert_error(again, 409, "not_higher")["price_to_win"]) > Decimal("20.00")

    winning = await api.post(bids_url(session), json={"price": mine["price_to_win"]}, headers=auth_header(c))
    assert winning.status_code == 201, winning.text
    assert winning.json()["is_winning"] is True and winning.json()["price_to_win"] is None
    assert (await api.get(me, headers=auth_header(c))).json()["price_to_win"] is None


async def test_no_price_to_win_outside_the_window(api, make_session, users, auth_header):
    later = await sync_to_async(make_session)(starts_in=600)
    (a,) = await sync_to_async(users)(1)
    body = assert_error(await api.get(f"/api/sessions/{later.pk}/bids/me", headers=auth_header(a)), 404, "no_bid")
    assert body["price_to_win"] is None
