"""The board socket (leaderboard.consumers) in-process (channels.testing against
flashbid.asgi.application) with the real pub/sub channel layer, Redis and PostgreSQL: the snapshot,
4404s, the relay of broadcasts, pushes that never wait on a slow client. The pushes themselves:
test_broadcaster.py."""

import asyncio
import json
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from auctions.services import bid_place
from leaderboard.broadcaster import get_broadcaster
from leaderboard.consumers import BoardConsumer
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


class _Client:
    """A BoardConsumer's far end: records what the server sends it; while `stalled`, a send waits
    (as uvicorn's does for a client whose buffers are full) until `resume`."""

    def __init__(self):
        self.texts: list[str] = []
        self.stalled = False
        self._resumed = asyncio.Event()

    async def send(self, message: dict) -> None:
        if self.stalled:
            await self._resumed.wait()
        self.texts.append(message["text"])

    def resume(self) -> None:
        self.stalled = False
        self._resumed.set()


def _listening_socket(client: _Client) -> BoardConsumer:
    socket = BoardConsumer()
    socket.base_send = client.send
    socket.pending = None  # past its snapshot
    return socket


def _ns(client: _Client) -> list[int]:
    """The frames this test published that reached `client` (the ticker's own are left out)."""
    return [frame["n"] for frame in map(json.loads, client.texts) if "n" in frame]


async def _until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_socket_whose_client_stops_reading_delays_no_other_socket(make_session):
    """Through the real relay (the layer's group, one channel per session and process): while one
    client takes nothing, the others get every push at once; the stalled one, once it reads again,
    gets what it missed in order, each whole state once (the newest board, not every one)."""
    session = await sync_to_async(make_session)(inventory=2)
    session_id = str(session.pk)
    slow, fast = _Client(), _Client()
    slow_socket, fast_socket = _listening_socket(slow), _listening_socket(fast)
    broadcaster = get_broadcaster()
    await broadcaster.join(session_id, slow_socket)
    await broadcaster.join(session_id, fast_socket)
    try:
        # Versions above any the ticker could push for this session meanwhile (its own boards
        # would be filtered out as older, and so would not count here).
        top = 1 << 62
        await publish(session_id, {"type": "board", "n": 1}, version=top + 1)
        await _until(lambda: _ns(fast) == [1] and _ns(slow) == [1])
        slow.stalled = True
        await publish(session_id, {"type": "board", "n": 2}, version=top + 2)  # the send that waits
        await publish(session_id, {"type": "board", "n": 3}, version=top + 3)
        await publish(session_id, {"type": "ended", "n": 4})
        await publish(session_id, {"type": "board", "n": 5}, version=top + 5)
        await _until(lambda: len(_ns(fast)) == 5)
        assert _ns(fast) == [1, 2, 3, 4, 5]
        assert _ns(slow) == [1]
        slow.resume()
        await _until(lambda: len(_ns(slow)) == 4)
        await asyncio.sleep(0.1)  # nothing more comes
        # Board 3 was replaced by board 5 while it waited; the status frame kept its place.
        assert _ns(slow) == [1, 2, 4, 5]
        assert slow_socket._waiting is None and fast_socket._waiting is None
    finally:
        await broadcaster.leave(session_id, slow_socket)
        await broadcaster.leave(session_id, fast_socket)


async def test_a_push_whose_send_fails_drops_only_that_sockets_queue(caplog):
    """A send that fails after waiting (the client went away): logged, what waited behind it is
    dropped, and the socket's next push goes out as usual."""
    attempts = []
    resumed = asyncio.Event()

    async def send(message: dict) -> None:
        attempts.append(message["text"])
        if message["text"] == "waits":
            await resumed.wait()
            raise OSError("connection lost")

    socket = BoardConsumer()
    socket.base_send = send
    socket.push({"type": "websocket.send", "text": "waits"})
    socket.push({"type": "websocket.send", "text": "queued"}, kind="board")
    assert attempts == ["waits"] and socket._waiting == [("board", {"type": "websocket.send", "text": "queued"})]
    resumed.set()
    await _until(lambda: socket._waiting is None)
    assert attempts == ["waits"]
    assert [r.getMessage() for r in caplog.records] == [
        "board push: a send to one socket failed (OSError('connection lost'))"]
    caplog.clear()  # expected here: not a broadcaster failure (leaderboard/tests/conftest.py)
    socket.push({"type": "websocket.send", "text": "next"})
    assert attempts == ["waits", "next"]
