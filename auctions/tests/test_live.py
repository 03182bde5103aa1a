"""A session's live state in Redis (auctions.live): its parameter hash follows every edit of the
session, and its scripts survive an emptied script cache."""

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from core.redis import get_redis
from tests.assertions import bids_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


async def test_an_emptied_script_cache_never_reaches_the_client(api, make_session, users, auth_header):
    session = await sync_to_async(make_session)()
    (user,) = await sync_to_async(users)(1)
    assert (await api.post(bids_url(session), json={"price": "11.00"}, headers=auth_header(user))).status_code == 201
    get_redis().script_flush()
    response = await api.post(bids_url(session), json={"price": "12.00"}, headers=auth_header(user))
    assert response.status_code == 201


async def test_admin_edit_of_a_session_reaches_the_engine(api, make_session, users, auth_header):
    session = await sync_to_async(make_session)(upset_price="10.00")
    (user,) = await sync_to_async(users)(1)
    assert (await api.post(bids_url(session), json={"price": "11.00"}, headers=auth_header(user))).status_code == 201
    session.upset_price = Decimal("50.00")
    await sync_to_async(session.save)()
    response = await api.post(bids_url(session), json={"price": "12.00"}, headers=auth_header(user))
    assert response.status_code == 422 and response.json()["code"] == "below_upset_price"
