"""The board's fan-out under uvicorn (core.websocket.frame_writer): a relayed push is framed once and
written straight to every socket whose send would write at once; a socket whose client stopped
reading falls back to ASGI sends (BoardConsumer.push), which delays no other socket and loses no
last state. uvicorn (`websockets-sansio`, as deploy/Procfile runs it) serves flashbid.asgi in this
test's event loop, on a real socket, against the test database and Redis; the clients are the
`websockets` library's."""

import asyncio
import json
import socket

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect

from leaderboard import consumers
from leaderboard.frames import publish

pytestmark = [pytest.mark.django_db(transaction=True)]

ORIGIN = "http://localhost"


@pytest.fixture
async def uvicorn_port():
    from flashbid.asgi import application

    # Port 0: the kernel picks a free one as the server binds (no race with another process).
    config = uvicorn.Config(application, host="127.0.0.1", port=0, http="flashbid.server:HttpProtocol",
                            ws="websockets-sansio", ws_per_message_deflate=False, lifespan="off",
                            log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), serving
        await asyncio.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await serving


@pytest.fixture
def writes(monkeypatch) -> list[tuple[bytes, bool]]:
    """Every frame a socket's writer was handed, with whether it wrote it (the real writer, counted)."""
    handed: list[tuple[bytes, bool]] = []
    real = consumers.frame_writer

    def counting(send):
        write = real(send)
        assert write is not None, "uvicorn's sansio protocol should get a frame writer"

        def counted(frame: bytes) -> bool:
            done = write(frame)
            handed.append((frame, done))
            return done

        return counted

    monkeypatch.setattr(consumers, "frame_writer", counting)
    return handed


async def test_a_push_is_one_frame_written_to_every_socket(uvicorn_port, writes, make_session):
    session = await sync_to_async(make_session)()
    url = f"ws://127.0.0.1:{uvicorn_port}/ws/sessions/{session.pk}/"
    async with connect(url, origin=ORIGIN) as a, connect(url, origin=ORIGIN) as b:
        versions = {json.loads(await ws.recv())["board"]["version"] for ws in (a, b)}
        version = versions.pop()
        for n in range(5):
            await publish(session.pk, {"type": "board", "n": n}, version=version + 1 + n)
        await publish(session.pk, {"type": "ended"})
        for ws in (a, b):
            received = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(6)]
            assert [m.get("n") for m in received] == [0, 1, 2, 3, 4, None] and received[-1]["type"] == "ended"
    assert len(writes) == 12 and all(done for _, done in writes)
    assert len({id(frame) for frame, _ in writes}) == 6  # one frame per push, shared by both sockets


async def test_a_client_that_stops_reading_falls_back_and_delays_no_other(uvicorn_port, writes, make_session):
    session = await sync_to_async(make_session)()
    url = f"ws://127.0.0.1:{uvicorn_port}/ws/sessions/{session.pk}/"
    pad = "x" * 60_000
    pushes = 300  # 18 MB: far more than the kernel holds for the stalled client (its window fixed below)
    # `stalled` stops reading from its socket once one message waits unread (max_queue=1); its
    # receive buffer is fixed small before it connects, so the kernel does not grow it to hold it all.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)
    sock.connect(("127.0.0.1", uvicorn_port))
    sock.setblocking(False)
    async with connect(url, sock=sock, origin=ORIGIN, max_queue=1, max_size=2**20) as stalled, \
            connect(url, origin=ORIGIN, max_size=2**20) as reading:
        version = json.loads(await stalled.recv())["board"]["version"]
        json.loads(await reading.recv())
        got = []

        async def read_all():
            while len(got) < pushes:
                got.append(json.loads(await reading.recv())["n"])

        reader = asyncio.create_task(read_all())
        for n in range(pushes):
            await publish(session.pk, {"type": "board", "n": n, "pad": pad}, version=version + 1 + n)
        await asyncio.wait_for(reader, 30)
        assert got == list(range(pushes))  # every push, in order, while the other client read nothing
        # The stalled client reads again: its frames arrive in order and end with the last state.
        seen = []
        while not seen or seen[-1] != pushes - 1:
            seen.append(json.loads(await asyncio.wait_for(stalled.recv(), 30))["n"])
    assert seen == sorted(set(seen)) and len(seen) < pushes  # in order; older boards replaced meanwhile
    assert any(not done for _, done in writes)  # the writer declined once the client's buffers were full
