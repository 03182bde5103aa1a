"""A session's live state in Redis (auctions.live): its parameter hash follows every edit of the
session, and its scripts survive an emptied script cache."""

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from core.redis import get_redis
from tests import processes
from tests.assertions import bids_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


@pytest.fixture
def engine_of_its_own(engine_redis, started, settings):
    """The engine on a Redis server of this test's own when it is the suite's plain Redis: SCRIPT
    FLUSH empties the whole server's script cache, and a test of the other test process that counts
    a request's commands would see the app load its scripts again. (The tests' Redis Cluster is
    already this test process's own.)"""
    if engine_redis == "single":
        port = processes.free_port()
        started(processes.redis_server, port)
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"


async def test_an_emptied_script_cache_never_reaches_the_client(engine_of_its_own, api, make_session, users,
                                                                auth_header):
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
