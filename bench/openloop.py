"""An open-loop HTTP load generator: requests leave at a fixed rate whatever the server does, and
each latency is measured from the moment its request was due (so a stalled server shows up as
latency, not as a lower offered rate: no coordinated omission).

Plain asyncio streams (on uvloop when installed) over keep-alive HTTP/1.1 connections, with requests
pre-rendered as bytes. One process offered ~2,000 req/s per core on plain asyncio before it fell
behind its own schedule; `run_processes` spreads one schedule over several processes (request n
goes to process n mod N, each with its own connections and event loop) and merges their results,
so the generator is not the bottleneck. Every result carries the generator's own CPU time and the
requests that left late (all connections busy, or the generator behind): a run whose generator was
saturated says so. Used by bench/run.py.
"""

import asyncio
import collections
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field

try:
    import uvloop
except ImportError:  # plain asyncio: about half the requests per core
    uvloop = None


@dataclass
class OpenLoopResult:
    offered_rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: int = 0
    error_kinds: collections.Counter = field(default_factory=collections.Counter)
    late: int = 0  # requests that left more than 1 ms after they were due: counted in latency
    cpu_seconds: float = 0.0  # the generator's own CPU time (all its processes)
    processes: int = 1
    # (n, status, wall-clock time of the answer) of every answer, when asked for (keep_answers)
    answers: list[tuple[int, int, float]] = field(default_factory=list)

    def merge(self, other: "OpenLoopResult") -> None:
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.errors += other.errors
        self.error_kinds.update(other.error_kinds)
        self.late += other.late
        self.cpu_seconds += other.cpu_seconds
        self.answers += other.answers

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
              connections: int = 256, on_response: Callable[[int, int], None] | None = None,
              keep_answers: bool = False, start_at: float | None = None, first: int = 0,
              step: int = 1) -> OpenLoopResult:
    """Offer `rate` requests/s for `duration` s. `make_request(n)` returns the n-th request's bytes
    (HTTP/1.1, keep-alive, with Content-Length). At most `connections` requests are in flight.
    `on_response(n, status)` is called as each answer arrives; `keep_answers` keeps (n, status,
    time.time()) of each in the result.

    One share of a schedule run by several processes: requests first, first + step, ... of the
    schedule that starts at `start_at` (time.monotonic(), the same clock in every process)."""
    result = OpenLoopResult(offered_rate=rate, seconds=duration)
    cpu_began = time.process_time()
    # Last in, first out: a warm connection is reused before a new one is opened, so only as many
    # connections are opened as the load needs.
    idle: asyncio.LifoQueue = asyncio.LifoQueue()
    for _ in range(connections):
        idle.put_nowait(None)  # opened lazily

    async def one(n: int, due: float) -> None:
        conn = await idle.get()
        if time.monotonic() - due > 0.001:
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
            result.latencies.append(time.monotonic() - due)
            result.statuses[status] += 1
            if keep_answers:
                result.answers.append((n, status, time.time()))
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
    began = time.monotonic() if start_at is None else start_at
    n = first
    interval = 1.0 / rate
    while (due := began + n * interval) < began + duration:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += step
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    while not idle.empty():
        conn = idle.get_nowait()
        if conn is not None:
            conn[1].close()
    result.cpu_seconds = time.process_time() - cpu_began
    return result


def loop_run(coroutine):
    if uvloop is not None:
        return asyncio.run(coroutine, loop_factory=uvloop.new_event_loop)
    return asyncio.run(coroutine)


def _share(queue, kwargs: dict) -> None:
    """A child process: its share of the schedule; the result goes back through `queue`."""
    try:
        queue.put(loop_run(run(**kwargs)))
    except BaseException as exc:  # the parent must hear of it rather than wait for ever
        queue.put(exc)
        raise


def run_processes(*, host: str, port: int, rate: float, duration: float, make_request: Callable[[int], bytes],
                  processes: int = 2, connections: int = 256, keep_answers: bool = False) -> OpenLoopResult:
    """`run` spread over `processes` processes (forked, so `make_request` need not be picklable):
    process k sends requests k, k + N, k + 2N, ... of one schedule of `rate` requests/s, on its own
    connections (`connections` / N each), and the results are merged. With one process, `run` in
    this process (on uvloop when installed)."""
    if processes <= 1:
        return loop_run(run(host=host, port=port, rate=rate, duration=duration, make_request=make_request,
                             connections=connections, keep_answers=keep_answers))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    # Every share starts on the same instant, far enough ahead for the forks to be ready.
    start_at = time.monotonic() + 0.5
    children = [context.Process(target=_share, daemon=True, args=(queue, {
        "host": host, "port": port, "rate": rate, "duration": duration, "make_request": make_request,
        "connections": math.ceil(connections / processes), "keep_answers": keep_answers,
        "start_at": start_at, "first": k, "step": processes})) for k in range(processes)]
    for child in children:
        child.start()
    merged = OpenLoopResult(offered_rate=rate, seconds=duration, processes=processes)
    try:
        for _ in children:
            share = queue.get(timeout=duration + 60)
            if isinstance(share, BaseException):
                raise RuntimeError("a load generator process failed") from share
            merged.merge(share)
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
    return merged
