"""The board socket (leaderboard.consumers) in-process (channels.testing against
flashbid.asgi.application) with the real pub/sub channel layer, Redis and PostgreSQL: the snapshot,
4404s, the relay of broadcasts. The pushes themselves: test_broadcaster.py."""

import json
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from auctions.services import bid_place
from leaderboard.frames import publish
from leaderboard.tests.sockets import connect
from tests import bidding

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


async def test_an_anonymous_socket_gets_a_snapshot_equal_to_the_first_board_page(api, make_session):
    session = await sync_to_async(make_session)(inventory=2)
    bidders = await sync_to_async(bidding.bidders)(3)
    for n, user in enumerate(bidders):
        await bid_place(session_id=str(session.pk), user=user, price=Decimal(f"{20 + n}.50"))

    socket = await connect(session.pk)
    try:
        snapshot = json.loads(await socket.receive_from(timeout=5))
    finally:
        await socket.disconnect()

    page = (await api.get(f"/api/sessions/{session.pk}/leaderboard?page=1&page_size=10")).json()
    assert set(snapshot) == {"type", "board", "server_time", "end_time", "start_time"}
    assert snapshot["type"] == "snapshot"
    assert snapshot["board"] == page
    assert [e["price"] for e in snapshot["board"]["entries"]] == ["22.50", "21.50", "20.50"]
    assert snapshot["start_time"].endswith("Z") and snapshot["end_time"].endswith("Z")
    assert snapshot["server_time"].endswith("Z")
    assert snapshot["end_time"] == session.end_time.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("session_id", [uuid.uuid4(), "not-a-session", "123"])
async def test_a_socket_for_no_session_is_closed_with_4404(db, session_id):
    socket = await connect(session_id)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}


async def test_relaying_a_broadcast_skips_the_database_connection_check(make_session, monkeypatch):
    calls = []

    async def counted():
        calls.append(1)

    monkeypatch.setattr("channels.consumer.aclose_old_connections", counted)
    session = await sync_to_async(make_session)()
    socket = await connect(session.pk)
    try:
        snapshot = json.loads(await socket.receive_from(timeout=5))
        assert len(calls) == 1  # websocket.connect keeps it
        for n in range(3):
            await publish(session.pk, {"type": "board", "n": n}, version=snapshot["board"]["version"] + 1 + n)
        received = [json.loads(await socket.receive_from(timeout=5)) for _ in range(3)]
        assert [m["n"] for m in received] == [0, 1, 2]
        assert len(calls) == 1  # none for the three broadcasts
    finally:
        await socket.disconnect()
    assert len(calls) == 2  # websocket.disconnect keeps it too
