"""bench/openloop.py, the open-loop generator the bench's latency rows rest on, against real sockets:
a small HTTP server in the test's event loop (or, for the processes, in a thread) that can answer
late, in chunks, close a connection after its answer or cut one mid-answer. What it must hold: every
request of the schedule sent once and answered once, each latency measured from the instant its
request was due (a slow server shows as latency, never as a lower rate), a connection the server
closed at rest retried, a broken answer counted as an error without stopping the run."""

import asyncio
import contextlib
import gc
import multiprocessing
import time

import pytest

from bench import openloop


async def _read_request(reader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


class Server:
    """HTTP/1.1 over asyncio streams. `answer(n, request)` gives the bytes of the n-th request's answer
    (n counted over the whole server) and what to do next: 'keep', 'close' (after the answer) or
    'cut' (send the bytes, then close: a broken answer)."""

    def __init__(self, answer=None, delay: float = 0.0):
        self.answer = answer or (lambda n, request: (_ok(), "keep"))
        self.delay = delay
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while request := await _read_request(reader):
                n = len(self.requests)
                self.requests.append(request)
                if self.delay:
                    await asyncio.sleep(self.delay)
                data, then = self.answer(n, request)
                writer.write(data)
                await writer.drain()
                if then != "keep":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _ok(status: int = 201, body: bytes = b'{"ok": true}') -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def _request(n: int) -> bytes:
    body = f'{{"n": {n}}}'.encode()
    return f"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def _sent(server: Server) -> list[int]:
    return sorted(int(request.rsplit(b'"n": ', 1)[1].rstrip(b"}")) for request in server.requests)


async def _run(server: Server, **options):
    kwargs = {"host": "127.0.0.1", "port": server.port, "rate": 400, "duration": 0.5,
              "make_request": _request, "keep_answers": True} | options
    return await openloop.run(**kwargs)


async def test_every_request_of_the_schedule_is_sent_once_and_answered_once():
    async with Server() as server:
        seen = []
        result = await _run(server, on_response=lambda n, status: seen.append((n, status)))
    assert _sent(server) == list(range(200))
    assert sorted(seen) == [(n, 201) for n in range(200)]
    assert sorted(n for n, _, _ in result.answers) == list(range(200))
    assert result.statuses == {201: 200} and result.errors == 0 and len(result.latencies) == 200
    # Keep-alive: fewer connections than requests (one is reused as soon as it is free).
    assert server.connections < 100
    assert result.cpu_seconds > 0


async def test_requests_leave_on_their_schedule_whatever_the_server_does():
    """A server 100 ms slow, 4 connections, 200 requests/s: a closed loop would send 40 requests a
    second; the schedule still sends all of them, and every latency counts from the due instant,
    waiting for a connection included."""
    async with Server(delay=0.1) as server:
        began = time.monotonic()
        result = await _run(server, rate=200, duration=0.5, connections=4)
        took = time.monotonic() - began
    assert _sent(server) == list(range(100)) and result.errors == 0
    # 100 requests through 4 connections at 100 ms each: 2.5 s of the server's time, so the last
    # answers came ~2 s after they were due; most requests waited for a connection (late).
    assert took >= 2.4
    assert all(latency >= 0.1 for latency in result.latencies)
    assert max(result.latencies) >= 1.9
    assert result.late >= 80


async def test_latency_is_measured_from_the_due_instant():
    async with Server(delay=0.05) as server:
        result = await _run(server, rate=50, duration=0.4)
    assert result.errors == 0 and len(result.latencies) == 20
    # 50 ms of the server's, plus the tick and the loopback (bounded loosely: the suite shares the
    # box's cores); never less than the server's own wait.
    assert all(0.05 <= latency < 0.3 for latency in result.latencies)


async def test_a_connection_the_server_closes_after_its_answer_costs_no_request():
    async with Server(answer=lambda n, request: (_ok(), "close")) as server:
        result = await _run(server)
    assert _sent(server) == list(range(200))
    assert result.errors == 0 and result.statuses == {201: 200}
    assert server.connections >= 200


async def test_a_request_on_a_connection_closed_as_it_was_reused_is_sent_once_more():
    """The server answers one request per connection and closes it on reading the next one,
    unanswered (as a keep-alive timeout racing the reuse does): that request never reached the
    application; the generator sends it again on a new connection."""
    dropped = []

    class OneAnswerEach(Server):
        async def _serve(self, reader, writer):
            self.connections += 1
            self.requests.append(await _read_request(reader))
            writer.write(_ok())
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                dropped.append(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

    async with OneAnswerEach() as server:
        result = await _run(server, rate=400, duration=0.25, connections=4)
    assert dropped  # the generator did reuse connections
    assert _sent(server) == list(range(100)) and result.errors == 0 and result.statuses == {201: 100}


async def test_connection_close_is_honoured(monkeypatch):
    """An answer with `Connection: close`: its connection is not used again (the server never reads
    another request on it), and the requests waiting for the only connection go out on new ones."""
    dropped = []

    class Closing(Server):
        async def _serve(self, reader, writer):
            self.connections += 1
            self.requests.append(await _read_request(reader))
            await asyncio.sleep(0.02)  # requests queue up behind the one connection meanwhile
            writer.write(b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                dropped.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5))
            writer.close()

    async with Closing() as server:
        monkeypatch.setattr(openloop, "ANSWER_WAIT", 5.0)
        result = await _run(server, rate=200, duration=0.25, connections=1)
    assert dropped == [] and result.errors == 0 and result.statuses == {201: 50}
    assert _sent(server) == list(range(50))


async def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_retry():
    """The request may have reached the application: it is not sent again."""
    class Dropping(Server):
        async def _serve(self, reader, writer):
            self.connections += 1
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

    async with Dropping() as server:
        result = await _run(server, rate=100, duration=0.2)
    assert len(server.requests) == 20 and server.connections == 20
    assert result.errors == 20 and not result.latencies


async def test_interim_answers_are_not_answers():
    """A `100 Continue` before the answer: one answer per request, each for its own request."""
    def answer(n, request):
        return b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(201, f'{{"n": {n}}}'.encode()), "keep"

    async with Server(answer=answer) as server:
        began = time.monotonic()
        result = await _run(server, rate=200, duration=0.25)
    assert time.monotonic() - began < 5  # nothing left waiting for an answer
    assert result.statuses == {201: 50} and result.errors == 0 and len(result.latencies) == 50


async def test_answers_still_out_at_the_end_are_counted_as_errors(monkeypatch):
    monkeypatch.setattr(openloop, "ANSWER_WAIT", 0.5)

    async with Server(delay=2) as server:
        result = await _run(server, rate=40, duration=0.25, keep_answers=False)
    assert result.errors == 10 and result.error_kinds == {"Timeout": 10} and not result.latencies


async def test_a_malformed_answer_is_an_error():
    async with Server(answer=lambda n, request: (b"HTTP/1.1 abc\r\n\r\n", "keep")) as server:
        result = await _run(server, rate=100, duration=0.1, keep_answers=False)
    assert result.errors == 10 and set(result.error_kinds) == {"HttpParserInvalidStatusError"}, result.error_kinds


async def test_a_failing_on_response_fails_the_run():
    def on_response(n, status):
        raise KeyError("the caller's bug")

    async with Server() as server:
        with pytest.raises(KeyError, match="the caller's bug"):
            await _run(server, rate=100, duration=0.1, on_response=on_response)


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_collector_does_not_run_during_the_schedule(enabled, monkeypatch):
    """A full collection of a process holding Django and the bench's bidders took ~100 ms: a stall
    of the generator, counted as the server's latency. The garbage is collected once before the
    run (recorded here, not made), then the collector is off and what lived before it is frozen;
    after it, the process's own setting is back. Frozen is looked at on the first and the last
    answer: gc.get_freeze_count() counts every frozen object, and 200 calls of it took 20-25 s in
    the suite's long-lived processes."""
    enabled_at, frozen_at, collected = [], [], []
    monkeypatch.setattr(gc, "collect", lambda *args: collected.append(len(enabled_at)))

    def on_response(n, status):
        enabled_at.append(gc.isenabled())
        if len(enabled_at) in (1, 200):
            frozen_at.append(gc.get_freeze_count() > 0)

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        async with Server() as server:
            result = await _run(server, on_response=on_response)
        assert len(enabled_at) == len(result.latencies) == 200
        assert enabled_at == [False] * 200 and frozen_at == [True, True]
        assert collected == [0]  # once, before the first answer
        assert gc.isenabled() is enabled and gc.get_freeze_count() == 0
    finally:
        (gc.enable if was else gc.disable)()


async def test_head_is_refused():
    with pytest.raises(ValueError, match="HEAD"):
        await openloop.run(host="127.0.0.1", port=1, rate=10, duration=0.1,
                           make_request=lambda n: b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")


async def test_an_answer_cut_short_is_an_error_and_the_run_goes_on():
    def answer(n, request):
        if n % 10 == 3:
            return _ok()[:-4], "cut"
        return _ok(), "keep"

    async with Server(answer=answer) as server:
        result = await _run(server, keep_answers=False)
    assert result.errors == 20 and result.statuses == {201: 180}
    assert result.error_kinds == {"ConnectionError": 20}
    assert _sent(server) == list(range(200))  # not sent again: it had reached the server


async def test_chunked_answers_and_every_status_are_read():
    def answer(n, request):
        if n % 2:
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", "keep"
        return _ok(409, b'{"code": "not_higher"}'), "keep"

    async with Server(answer=answer) as server:
        result = await _run(server, rate=200, duration=0.5)
    assert result.statuses == {200: 50, 409: 50} and result.errors == 0


async def test_a_server_that_is_not_there_is_counted_not_waited_for():
    async with Server() as server:
        port = server.port
    result = await openloop.run(host="127.0.0.1", port=port, rate=100, duration=0.2, make_request=_request)
    assert result.errors == 20 and not result.latencies
    assert result.error_kinds == {"ConnectionRefusedError": 20}


def _serve_in_a_process(ports) -> None:
    async def main():
        async with Server() as server:
            ports.put(server.port)
            await asyncio.Event().wait()

    asyncio.run(main())


def test_processes_share_one_schedule():
    """Two forked processes: each request of the one schedule answered once, in one of them, and
    the merged result holds all the answers and both processes' CPU. (The server runs in a process
    of its own: the generator forks, and this process must not hold a thread then.)"""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=_serve_in_a_process, args=(ports,), daemon=True)
    server.start()
    try:
        result = openloop.run_processes(host="127.0.0.1", port=ports.get(timeout=30), rate=400, duration=0.5,
                                        make_request=_request, processes=2, keep_answers=True)
    finally:
        server.kill()
        server.join(5)
    assert result.processes == 2 and result.cpu_seconds > 0
    assert sorted(n for n, _, _ in result.answers) == list(range(200))
    assert result.statuses == {201: 200} and result.errors == 0


def test_a_process_that_fails_fails_the_run_at_once():
    def make_request(n):
        if n == 3:
            raise KeyError("no such request")
        return _request(n)

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="a load generator process failed"):
        openloop.run_processes(host="127.0.0.1", port=1, rate=100, duration=0.5, make_request=make_request,
                               processes=2)
    assert time.monotonic() - began < 30


@pytest.mark.parametrize("rate, duration, count", [(1000, 0.0105, 11), (3, 1, 3), (0.5, 1, 1)])
async def test_the_schedule_is_rate_times_duration(rate, duration, count):
    async with Server() as server:
        result = await _run(server, rate=rate, duration=duration)
    assert len(result.latencies) == count and _sent(server) == list(range(count))

