"""The coalescing broadcaster (leaderboard.broadcaster) with the real pub/sub channel layer, Redis and
PostgreSQL: quick bids coalesced into few pushes, the end and the settlement pushed once, several
processes pushing each state once, a dead process's claim taken over when its lease ends."""

import asyncio
import datetime as dt
import json
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from auctions import live, settlement
from auctions.rules import to_us
from auctions.services import bid_place
from core.redis import get_async_redis
from leaderboard import broadcaster
from leaderboard.broadcaster import Broadcaster
from leaderboard.frames import board_group
from leaderboard.tests.sockets import board_at, connect, receive_until
from tests import bidding

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


async def test_quick_bids_are_coalesced_into_few_pushes_ending_with_the_final_version(make_session):
    session = await sync_to_async(make_session)(inventory=5)
    bidders = await sync_to_async(bidding.bidders)(40)
    socket = await connect(session.pk)
    try:
        snapshot = json.loads(await socket.receive_from(timeout=5))
        versions = []
        started = time.monotonic()
        for n in range(120):  # ~1.2 s of bids, one every ~10 ms
            reply = await bid_place(session_id=str(session.pk), user=bidders[n % 40], price=Decimal(f"{20 + n}.00"))
            versions.append(reply.version)
            await asyncio.sleep(0.01)
        last_bid = time.monotonic()
        burst = last_bid - started
        messages = await receive_until(socket, board_at(max(versions)), timeout=5)
        latency = time.monotonic() - last_bid
        assert await socket.receive_nothing(timeout=0.5)  # nothing after the final state
    finally:
        await socket.disconnect()

    assert all(m["type"] == "board" for m in messages)
    pushed = [m["board"]["version"] for m in messages]
    print(f"120 bids in {burst:.2f} s -> {len(pushed)} pushes; final state {latency * 1000:.0f} ms after the last bid")
    assert pushed == sorted(set(pushed)) and pushed[0] > snapshot["board"]["version"]
    assert pushed[-1] == max(versions) == snapshot["board"]["version"] + 120
    assert len(pushed) <= burst / (settings.BROADCAST_INTERVAL_MS / 1000) + 2
    assert set(messages[-1]) == {"type", "board", "server_time", "end_time", "start_time"}
    assert messages[-1]["board"]["entries"][0]["price"] == "139.00"


async def test_the_end_and_the_settlement_each_reach_the_socket_once(make_session):
    session = await sync_to_async(make_session)(starts_in=-10, lasts=11.5)  # ends in 1.5 s
    (bidder,) = await sync_to_async(bidding.bidders)(1)
    socket = await connect(session.pk)
    try:
        await socket.receive_from(timeout=5)  # snapshot
        reply = await bid_place(session_id=str(session.pk), user=bidder, price=Decimal("30.00"))
        await receive_until(socket, board_at(reply.version), timeout=5)

        (ended,) = await receive_until(socket, lambda m: True, timeout=10)
        assert ended["type"] == "status" and ended["status"] == "ended"
        assert set(ended) == {"type", "status", "server_time"}
        assert to_us(session.end_time) <= to_us(dt.datetime.fromisoformat(ended["server_time"]))

        # Settled from a thread of this loop, as the admin endpoint (a sync view) does: the results
        # arrive, and this process's layer keeps serving its sockets afterwards.
        # (The settled board is pushed by whichever ticker sees the version bump first, so it may
        # come before the results.)
        await sync_to_async(settlement.session_settle)(session_id=str(session.pk))
        after = [json.loads(await socket.receive_from(timeout=5)) for _ in range(2)]
        results = next(m for m in after if m["type"] == "results")
        assert set(results) == {"type", "results"}
        assert results["results"]["final_price"] == "30.00"
        assert results["results"]["winners"][0]["user_id"] == bidder.id
        settled = next(m for m in after if m["type"] == "board")
        assert settled["board"]["status"] == "settled"
        assert await socket.receive_nothing(timeout=0.5)
    finally:
        await socket.disconnect()


async def test_several_processes_polling_push_each_state_once(make_session):
    """Three tickers (as in three web processes) watch one session: every board version and the end
    are published once, seen on the raw group, where no per-socket version filter hides repeats."""
    session = await sync_to_async(make_session)(starts_in=-10, lasts=12)  # ends in 2 s
    bidders = await sync_to_async(bidding.bidders)(20)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(board_group(session.pk), channel)
    events: list[dict] = []

    async def collect():
        while True:
            events.append(await layer.receive(channel))

    collector = asyncio.create_task(collect())
    loop = asyncio.get_running_loop()
    others = [Broadcaster(loop), Broadcaster(loop)]
    socket = await connect(session.pk)  # the third ticker: this loop's own
    try:
        for other in others:
            other.listen(str(session.pk))
        versions = []
        for n in range(60):
            reply = await bid_place(session_id=str(session.pk), user=bidders[n % 20], price=Decimal(f"{20 + n}.00"))
            versions.append(reply.version)
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 10
        while not any(json.loads(e["text"])["type"] == "status" for e in events):
            assert time.monotonic() < deadline, "no status message"
            await asyncio.sleep(0.05)
        await asyncio.sleep(3 * settings.BROADCAST_INTERVAL_MS / 1000)  # room for a duplicate to show
    finally:
        for other in others:
            other.unlisten(str(session.pk))
        await socket.disconnect()
        collector.cancel()

    messages = [json.loads(e["text"]) for e in events]
    boards = [m["board"]["version"] for m in messages if m["type"] == "board"]
    assert boards == sorted(set(boards)) and boards[-1] == max(versions)
    assert [e["version"] for e in events if "version" in e] == boards
    assert [m["type"] for m in messages].count("status") == 1


async def test_a_claim_whose_process_died_is_taken_over_when_its_lease_ends(make_session):
    session = await sync_to_async(make_session)()
    (bidder,) = await sync_to_async(bidding.bidders)(1)
    await bid_place(session_id=str(session.pk), user=bidder, price=Decimal("20.00"))
    keys = live.session_keys(session.pk)
    # A process claims the push and dies before publishing or confirming.
    claimed = await get_async_redis().eval(
        broadcaster.SOURCES["push_claim"], 3, keys.params, keys.meta, broadcaster.push_key(session.pk),
        "dead-process", settings.BROADCAST_INTERVAL_MS, broadcaster.PUSH_LEASE_MS, 60_000)
    claimed_at = time.monotonic()
    assert claimed[0] == "claim"

    socket = await connect(session.pk)
    try:
        await socket.receive_from(timeout=5)  # snapshot
        reply = await bid_place(session_id=str(session.pk), user=bidder, price=Decimal("25.00"))
        (push,) = await receive_until(socket, board_at(reply.version), timeout=5)
        waited = time.monotonic() - claimed_at
    finally:
        await socket.disconnect()
    assert push["board"]["entries"][0]["price"] == "25.00"
    assert broadcaster.PUSH_LEASE_MS / 1000 - 0.05 <= waited  # not before the lease ended
