"""The WebSocket's guards against real daphne (core.websocket): the public board serves a client
without an Origin header (a script, an app), refuses a foreign browser origin, and caps the sockets
one address holds in a process."""

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]


async def _snapshot(url: str, **kwargs) -> dict:
    async with websockets.connect(url, open_timeout=10, **kwargs) as socket:
        return json.loads(await asyncio.wait_for(socket.recv(), 10))


def test_sockets_without_origin_are_served_foreign_browser_origins_refused_and_one_address_capped(
        started, make_session):
    port = processes.free_port()
    started(processes.daphne, port, WEBSOCKETS_PER_ADDRESS="3")
    session = make_session()
    url = f"ws://127.0.0.1:{port}/ws/sessions/{session.pk}/"

    async def scenario():
        # websockets' client sends no Origin unless asked: a script or an app.
        assert (await _snapshot(url))["type"] == "snapshot"
        assert (await _snapshot(url, origin=f"http://127.0.0.1:{port}"))["type"] == "snapshot"
        with pytest.raises(InvalidStatus) as refused:
            await _snapshot(url, origin="https://evil.example")
        assert refused.value.response.status_code == 403

        held = [await websockets.connect(url, open_timeout=10) for _ in range(3)]
        try:
            with pytest.raises(InvalidStatus) as capped:
                await websockets.connect(url, open_timeout=10)
            assert capped.value.response.status_code == 403
        finally:
            for socket in held:
                await socket.close()
        await asyncio.sleep(0.5)  # the server sees the closes
        assert (await _snapshot(url))["type"] == "snapshot"  # room again

    asyncio.run(scenario())
