"""Unknown session ids are answered from Redis alone (auctions.recovery.session_known): a flood of
random ids costs no SQL on the bid, the board, my bid or the WebSocket, and queues nothing on the
one sync thread the cold paths of real sessions share."""

import asyncio
import uuid

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from auctions import live, recovery
from core.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


def _requests(paths_and_methods, headers, *, at_once: bool = False):
    """The requests one after another, or all at once (`at_once`)."""
    from flashbid.asgi import application

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                     base_url="http://localhost") as client:
            requests = [client.request(method, path, headers=headers, json=body)
                        for method, path, body in paths_and_methods]
            if at_once:
                return await asyncio.gather(*requests)
            return [await request for request in requests]

    return async_to_sync(go)()


def test_unknown_session_ids_cost_no_sql(make_session, make_user, auth_header, executed_sql):
    make_session()
    # The set whole: rebuilt once after Redis began empty, kept with the sessions since.
    recovery.known_sessions_rebuild()
    headers = auth_header(make_user())
    _requests([("GET", "/api/auth/me", None)], headers)  # warm the user cache
    executed_sql.clear()
    calls = []
    for _ in range(5):
        base = f"/api/sessions/{uuid.uuid4()}"
        calls += [("POST", f"{base}/bids", {"price": "20.00"}), ("GET", f"{base}/leaderboard", None),
                  ("GET", f"{base}/leaderboard/meta", None), ("GET", f"{base}/bids/me", None)]

    answers = _requests(calls, headers)

    assert {(r.status_code, r.json()["code"]) for r in answers} == {(404, "not_found")}
    assert executed_sql == []


def test_the_known_ids_come_back_with_one_query_after_redis_lost_them(make_session, make_user, auth_header,
                                                                    executed_sql):
    session = make_session()
    headers = auth_header(make_user())
    _requests([("GET", "/api/auth/me", None)], headers)
    get_redis().delete(live.KNOWN_SESSIONS_KEY)
    executed_sql.clear()

    answers = _requests([("GET", f"/api/sessions/{uuid.uuid4()}/leaderboard/meta", None)] * 3
                        + [("GET", f"/api/sessions/{session.pk}/leaderboard/meta", None)], headers)

    assert [r.status_code for r in answers] == [404, 404, 404, 200]
    rebuilds = [sql for sql in executed_sql if "auctions_biddingsession" in sql and "WHERE" not in sql]
    assert len(rebuilds) == 1


def test_requests_that_all_found_the_known_ids_gone_refill_them_with_one_query(make_session, make_user, auth_header,
                                                                             executed_sql):
    """Many requests at once find the set gone (bidders resuming after a FLUSHALL): the first
    refills it, the others find it refilled, whatever order their rebuilds run in."""
    session = make_session()
    headers = auth_header(make_user())
    _requests([("GET", "/api/auth/me", None)], headers)
    get_redis().delete(live.KNOWN_SESSIONS_KEY)
    executed_sql.clear()

    answers = _requests([("GET", f"/api/sessions/{session.pk}/leaderboard/meta", None)] * 20, headers, at_once=True)

    assert [r.status_code for r in answers] == [200] * 20
    rebuilds = [sql for sql in executed_sql if "auctions_biddingsession" in sql and "WHERE" not in sql]
    assert len(rebuilds) == 1


def test_a_session_saved_after_redis_lost_the_known_ids_does_not_make_the_others_unknown(make_session, make_user,
                                                                                        auth_header):
    """The saved session's id goes into a set Redis has begun again; until a rebuild the set is
    not whole, so an older session whose live state must be restored is still found."""
    older = make_session()
    headers = auth_header(make_user())
    client = get_redis()
    client.delete(live.KNOWN_SESSIONS_KEY, live.session_keys(older.pk).params)  # Redis lost both
    make_session()

    answers = _requests([("GET", f"/api/sessions/{older.pk}/leaderboard/meta", None),
                         ("POST", f"/api/sessions/{older.pk}/bids", {"price": "20.00"})], headers)

    assert [r.status_code for r in answers] == [200, 201], [r.text for r in answers]
    assert client.sismember(live.KNOWN_SESSIONS_KEY, live.KNOWN_SENTINEL)


def test_a_socket_to_an_unknown_session_is_closed_before_it_costs_anything(make_session, executed_sql):
    from flashbid.asgi import application

    make_session()
    recovery.known_sessions_rebuild()
    executed_sql.clear()

    async def go():
        socket = WebsocketCommunicator(application, f"/ws/sessions/{uuid.uuid4()}/")
        connected, _ = await socket.connect()
        assert connected
        closed = await socket.receive_output(timeout=5)
        await socket.disconnect()
        return closed

    assert async_to_sync(go)() == {"type": "websocket.close", "code": 4404}
    assert executed_sql == []
