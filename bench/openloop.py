"""An open-loop HTTP load generator: requests leave at a fixed rate whatever the server does, and
each latency is measured from the moment its request was due (so a stalled server shows up as
latency, not as a lower offered rate: no coordinated omission).

Plain asyncio streams over keep-alive HTTP/1.1 connections, with requests pre-rendered as bytes:
cheap enough to offer ~2,000 req/s from one core. Used by bench/run.py.
"""

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class OpenLoopResult:
    offered_rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: int = 0
    error_kinds: collections.Counter = field(default_factory=collections.Counter)
    late: int = 0  # requests that could not leave on time (every connection busy): counted in latency

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()  # the blank line after the last chunk
    elif length:
        await reader.readexactly(length)
    return status


async def run(*, host: str, port: int, rate: float, duration: float, make_request: Callable[[int], bytes],
              connections: int = 256, on_response: Callable[[int, int], None] | None = None) -> OpenLoopResult:
    """Offer `rate` requests/s for `duration` s. `make_request(n)` returns the n-th request's bytes
    (HTTP/1.1, keep-alive, with Content-Length). At most `connections` requests are in flight.
    `on_response(n, status)` is called as each answer arrives."""
    result = OpenLoopResult(offered_rate=rate, seconds=duration)
    # Last in, first out: a warm connection is reused before a new one is opened, so only as many
    # connections are opened as the load needs.
    idle: asyncio.LifoQueue = asyncio.LifoQueue()
    for _ in range(connections):
        idle.put_nowait(None)  # opened lazily

    async def one(n: int, due: float) -> None:
        conn = await idle.get()
        if time.perf_counter() - due > 0.001:
            result.late += 1
        try:
            if conn is not None and conn[0].at_eof():  # the server closed it while it was idle
                conn[1].close()
                conn = None
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            reader, writer = conn
            writer.write(make_request(n))
            try:
                status = await _read_response(reader)
            except ConnectionError:
                # Closed by the server's keep-alive timeout just as it was reused: once more on a
                # new connection (the request never reached the application).
                writer.close()
                conn = reader, writer = await asyncio.open_connection(host, port)
                writer.write(make_request(n))
                status = await _read_response(reader)
            result.latencies.append(time.perf_counter() - due)
            result.statuses[status] += 1
            if on_response is not None:
                on_response(n, status)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            result.errors += 1
            result.error_kinds[type(exc).__name__] += 1
            if conn is not None:
                conn[1].close()
            conn = None
        idle.put_nowait(conn)

    tasks = set()
    began = time.perf_counter()
    n = 0
    interval = 1.0 / rate
    while (due := began + n * interval) < began + duration:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    while not idle.empty():
        conn = idle.get_nowait()
        if conn is not None:
            conn[1].close()
    return result
