"""flashbid.server's HTTP protocol against uvicorn's own (httptools), request by request: the same
bytes on the wire, in fewer writes (a response with a Content-Length: its head and body in one).

Both protocols run in this test's event loop on a transport that records each write, as uvicorn's
own protocol tests do (the socket is the kernel's business; the real server runs the protocol in
tests/test_procfile_web.py, through deploy/Procfile's web line)."""

import asyncio
import gc

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from flashbid.server import HttpProtocol


class RecordingTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.protocol = None

    def write(self, data):
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def set_protocol(self, protocol):
        self.protocol = protocol


def _connected(protocol_class, app, transport: RecordingTransport | None = None, **options):
    """A new connection of `protocol_class` running `app` (uvicorn Config `options` beside the
    defaults here): (protocol, its server state, its transport)."""
    config = Config(app=app, http=protocol_class, lifespan="off", log_level="critical", **options)
    config.load()
    state = ServerState()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    transport = transport or RecordingTransport()
    protocol.connection_made(transport)
    return protocol, state, transport


async def _settle(steps: int = 20) -> None:
    """Lets the loop run what the last data_received started."""
    for _ in range(steps):
        await asyncio.sleep(0)


async def _serve(protocol_class, app, *requests: bytes, transport: RecordingTransport | None = None,
                 settle: int = 20) -> RecordingTransport:
    """Feeds `requests` (each one data_received) to a new connection of `protocol_class` running
    `app`; returns its transport once every task the protocol started is done."""
    protocol, state, transport = _connected(protocol_class, app, transport)
    for data in requests:
        protocol.data_received(data)
        await _settle(settle)
    while state.tasks:
        await asyncio.gather(*state.tasks, return_exceptions=True)
    if protocol.timeout_keep_alive_task is not None:
        protocol.timeout_keep_alive_task.cancel()
    return transport


async def _both(app, *requests: bytes) -> tuple[RecordingTransport, RecordingTransport]:
    return await _serve(HttpToolsProtocol, app, *requests), await _serve(HttpProtocol, app, *requests)


GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"


async def sized(scope, receive, send):
    body = b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def test_a_response_with_a_length_is_one_write_of_the_same_bytes():
    theirs, ours = await _both(sized, GET)
    assert len(theirs.writes) == 2  # uvicorn's own: the head, then the body
    assert ours.writes == [b"".join(theirs.writes)]
    assert ours.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours.writes[0].endswith(b'\r\n\r\n{"ok": true}')
    assert not ours.closed


async def test_pipelined_requests_are_answered_in_order_one_write_each():
    theirs, ours = await _both(sized, GET + GET + GET)
    assert len(ours.writes) == 3 and b"".join(ours.writes) == b"".join(theirs.writes)


async def test_a_body_sent_in_parts_writes_the_head_with_the_first():
    async def parts(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"def"})

    theirs, ours = await _both(parts, GET)
    assert len(theirs.writes) == 3
    assert ours.writes == [theirs.writes[0] + b"abc", b"def"]


async def test_a_streamed_response_writes_its_head_at_once():
    """Chunked (no Content-Length: the exports): the head goes out when the response starts, before
    the first chunk is ready, as uvicorn writes it."""
    written = {}
    for protocol_class in (HttpToolsProtocol, HttpProtocol):
        transport = RecordingTransport()
        writes_before_first_chunk = []

        async def streamed(scope, receive, send, transport=transport, seen=writes_before_first_chunk):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/csv")]})
            seen.append(len(transport.writes))
            await send({"type": "http.response.body", "body": b"a,b\r\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        await _serve(protocol_class, streamed, GET, transport=transport)
        assert writes_before_first_chunk == [1]
        written[protocol_class] = transport.writes
    ours = written[HttpProtocol]
    assert ours == written[HttpToolsProtocol] and b"transfer-encoding: chunked" in ours[0]


async def test_100_continue_is_written_before_the_response_starts():
    async def reads_first(scope, receive, send):
        message = await receive()
        await sized(scope, receive, send) if message["body"] == b"hi" else None

    request = b"POST /x HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    protocol, state, transport = _connected(HttpProtocol, reads_first)
    protocol.data_received(request)
    await _settle()
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client may now send its body
    protocol.data_received(b"hi")
    await asyncio.gather(*state.tasks)
    protocol.timeout_keep_alive_task.cancel()
    assert len(transport.writes) == 2 and transport.writes[1].startswith(b"HTTP/1.1 200 OK")


async def test_an_app_that_fails_after_starting_has_the_head_written_and_the_connection_closed():
    async def fails(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    theirs, ours = await _both(fails, GET)
    assert ours.writes == theirs.writes and len(ours.writes) == 1 and ours.closed and theirs.closed


async def test_an_app_that_fails_before_starting_gets_the_servers_500_in_one_write():
    async def fails(scope, receive, send):
        raise RuntimeError("boom")

    theirs, ours = await _both(fails, GET)
    assert ours.writes == [b"".join(theirs.writes)] and ours.writes[0].startswith(b"HTTP/1.1 500 ")


async def test_a_bodiless_answer_and_a_head_request_match_uvicorns():
    async def no_content(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    for app, request in ((no_content, GET), (sized, GET.replace(b"GET", b"HEAD"))):
        theirs, ours = await _both(app, request)
        assert b"".join(ours.writes) == b"".join(theirs.writes)
        assert len(ours.writes) <= len(theirs.writes)


async def test_a_websocket_upgrade_is_handed_over_untouched():
    """The upgrade hands the connection's own transport to the WebSocket protocol (no wrapper)."""
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

    async def accepts(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    protocol, _, transport = _connected(HttpProtocol, accepts, ws="websockets-sansio")
    protocol.data_received(upgrade)
    await _settle(50)
    assert transport.protocol is not None and transport.protocol.transport is transport
    assert transport.writes[0].startswith(b"HTTP/1.1 101 ")


async def test_finished_requests_leave_nothing_for_the_cyclic_collector():
    """Each request's objects are freed when it ends, as with uvicorn's own protocol: a reference
    cycle per request (the cycle and its transport) had left them to the collector, whose longer
    passes doubled the bid's p99 at half load."""
    left = {}
    for protocol_class in (HttpToolsProtocol, HttpProtocol):
        gc.collect()
        gc.disable()
        try:
            await _serve(protocol_class, sized, *(GET for _ in range(200)), settle=5)
            left[protocol_class] = gc.collect()
        finally:
            gc.enable()
    assert left[HttpProtocol] <= left[HttpToolsProtocol] + 10, left


async def test_a_client_gone_before_the_body_is_written_nothing_and_nothing_fails():
    """The head is held, the client goes, then the application fails: nothing is written to the
    dead connection (uvloop would raise), as uvicorn's own protocol writes nothing either."""
    gone = asyncio.Event()

    async def fails_late(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await gone.wait()
        raise RuntimeError("boom")

    protocol, state, transport = _connected(HttpProtocol, fails_late)
    protocol.data_received(GET)
    await _settle()
    running = list(state.tasks)
    protocol.connection_lost(None)  # closes the transport: a write now fails
    gone.set()
    assert await asyncio.gather(*running, return_exceptions=True) == [None]
    assert transport.writes == []
