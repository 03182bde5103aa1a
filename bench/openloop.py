"""An open-loop HTTP load generator: requests leave at a fixed rate whatever the server does, and
each latency is measured from the moment its request was due (so a stalled server shows up as
latency, not as a lower offered rate: no coordinated omission).

asyncio protocols (on uvloop when installed) over keep-alive HTTP/1.1 connections, the answers
parsed by httptools, the requests made before the clock starts, and the schedule kept by a
millisecond tick that sends every request then due (TICK below): 23-35 µs of CPU per request
against nginx at 4,000-8,000 req/s, where asyncio streams with a task and a sleep per request took
45-64 µs. `run_processes` spreads one schedule over several processes (request n goes to process
n mod N, each with its own connections and event loop) and merges their results. Every result
carries the generator's own CPU time and the requests that left late (all connections busy, or
the generator behind): a run whose generator was saturated says so. Used by bench/run.py.
"""

import asyncio
import collections
import contextlib
import gc
import itertools
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

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
    late: int = 0  # requests that left more than LATE after they were due: counted in latency
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


# The schedule's clock. uvloop's timers count whole milliseconds: a sleep shorter than half of one
# is a zero-time timer, and a generator that slept until each request's own instant spun on them
# (measured against nginx at 4,000 req/s: 60-64 µs of CPU per request sleeping per request, ~240
# with sub-millisecond sleeps; 28-40 µs waking once a millisecond and sending all then due). Every
# latency is still measured from the instant its request was due, so the tick's wait counts in it.
TICK = 0.001
# A request that leaves later than this after its instant is counted late: the tick itself makes
# up to a millisecond of that, so more means the generator (or the box) did not keep up.
LATE = TICK + 0.001
# How long the answers still out when the last request was due are waited for; then they are
# counted as errors ("Timeout").
ANSWER_WAIT = 30.0


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request in flight at a time; the answer is parsed by
    httptools (uvicorn's parser), its status and end read off the parser. Answers must carry a
    Content-Length or be chunked (one that ends when the server closes is an error: httptools
    cannot be told the input ended), and HEAD is not offered (its answer's length would be read
    as a body to wait for)."""

    def __init__(self, generator: "_Generator"):
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.n: int | None = None  # the request in flight
        self.due = 0.0
        self.request = b""
        self.retried = False
        self.received = False  # some of its answer has come
        self.reused = False  # it has carried an answer before
        self.error: Exception | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, n: int, due: float, request: bytes, retried: bool = False) -> None:
        self.n, self.due, self.request, self.retried = n, due, request, retried
        if not retried and time.monotonic() - due > LATE:
            self.generator.result.late += 1
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # raised in a callback (on_response): a bug
            self.generator.fail(exc.__context__ or exc)
            self.transport.abort()
        except httptools.HttpParserError as exc:  # a malformed answer, or one with no request
            self.error = exc
            self.transport.abort()

    def on_message_complete(self) -> None:  # httptools' callback: an answer has come
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and the like: the answer is still to come
            return
        if self.n is None:  # the server answered a request it was not sent: not to be trusted
            self.generator.result.error_kinds["AnswerToNoRequest"] += 1
            self.transport.abort()
            return
        n, due = self.n, self.due
        self.n, self.received, self.reused = None, False, True
        if self.parser.should_keep_alive():
            self.generator.answered(self, n, due, status)
        else:  # `Connection: close`: not to be reused; its slot is free for a new one now
            self.generator.opened.discard(self)
            self.generator.answered(None, n, due, status)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self, self.error or exc)


class _Generator:
    """The connections of one run: idle ones reused last in, first out (a warm connection before a
    new one, so only as many are opened as the load needs), at most `connections`; a request due
    when all are busy waits for the first to be free."""

    def __init__(self, loop, host: str, port: int, connections: int, result: OpenLoopResult,
                 on_response: Callable[[int, int], None] | None, keep_answers: bool):
        self.loop, self.host, self.port, self.connections = loop, host, port, connections
        self.result, self.on_response, self.keep_answers = result, on_response, keep_answers
        self.idle: list[_Connection] = []
        self.opened: set[_Connection] = set()
        self.opening = 0
        self.waiting: collections.deque = collections.deque()
        self.outstanding = 0
        self.all_answered = loop.create_future()
        self.scheduled = False  # every request of the schedule has been submitted
        self.finished = False  # the run is over: what happens to its connections now is not counted
        self.failure: BaseException | None = None  # an exception of on_response, raised by run
        self._tasks: set[asyncio.Task] = set()  # referenced until done

    def submit(self, n: int, due: float, request: bytes) -> None:
        self.outstanding += 1
        self._dispatch(n, due, request, False)

    def _dispatch(self, n: int, due: float, request: bytes, retried: bool) -> None:
        if self.idle and not retried:
            self.idle.pop().send(n, due, request, retried)
        elif len(self.opened) + self.opening < self.connections:
            self.opening += 1
            task = self.loop.create_task(self._open(n, due, request, retried))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.waiting.append((n, due, request, retried))

    async def _open(self, n: int, due: float, request: bytes, retried: bool) -> None:
        try:
            _, connection = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError as exc:
            self.opening -= 1
            self._failed(exc)
            self._next(None)
            return
        self.opening -= 1
        self.opened.add(connection)
        connection.send(n, due, request, retried)

    def _next(self, connection: _Connection | None) -> None:
        """A connection is free (None: one went away): the next waiting request takes it."""
        if self.waiting:
            if connection is None:
                self._dispatch(*self.waiting.popleft())
            else:
                connection.send(*self.waiting.popleft())
        elif connection is not None:
            self.idle.append(connection)

    def fail(self, exc: BaseException) -> None:
        """The run ends now and raises `exc`."""
        self.failure = self.failure or exc
        if not self.all_answered.done():
            self.all_answered.set_result(None)

    def _done(self) -> None:
        self.outstanding -= 1
        if not self.outstanding and self.scheduled and not self.all_answered.done():
            self.all_answered.set_result(None)

    def answered(self, connection: _Connection | None, n: int, due: float, status: int) -> None:
        result = self.result
        result.latencies.append(time.monotonic() - due)
        result.statuses[status] += 1
        if self.keep_answers:
            result.answers.append((n, status, time.time()))
        if self.on_response is not None:
            self.on_response(n, status)
        self._done()
        self._next(connection)

    def _failed(self, exc: Exception) -> None:
        self.result.errors += 1
        self.result.error_kinds[type(exc).__name__] += 1
        self._done()

    def lost(self, connection: _Connection, exc: Exception | None) -> None:
        self.opened.discard(connection)
        if self.finished:
            return
        if connection.n is None:  # closed by the server while idle
            if connection in self.idle:
                self.idle.remove(connection)
            return
        if connection.reused and not connection.received and not connection.retried:
            # A kept-alive connection closed by the server (its keep-alive timeout) just as it was
            # reused, before a byte of the answer: once more, on a new connection (the request
            # never reached the application; its slot is free). A new connection closed so is an
            # error: the request may have reached the application.
            self._dispatch(connection.n, connection.due, connection.request, True)
            return
        self._failed(exc or ConnectionError("connection closed before the whole answer"))
        self._next(None)


async def run(*, host: str, port: int, rate: float, duration: float, make_request: Callable[[int], bytes],
              connections: int = 256, on_response: Callable[[int, int], None] | None = None,
              keep_answers: bool = False, start_at: Callable[[], float] | None = None, first: int = 0,
              step: int = 1) -> OpenLoopResult:
    """Offer `rate` requests/s for `duration` s. `make_request(n)` returns the n-th request's bytes
    (HTTP/1.1, keep-alive, with Content-Length); every request is made before the clock starts.
    At most `connections` requests are in flight. `on_response(n, status)` is called as each
    answer arrives; `keep_answers` keeps (n, status, time.time()) of each in the result.

    One share of a schedule run by several processes: requests first, first + step, ... of the
    schedule that starts at `start_at()` (time.monotonic(), the same clock in every process),
    called once this share's requests are made.

    Requests still unanswered ANSWER_WAIT after the last was due are counted as errors
    (`Timeout`)."""
    result = OpenLoopResult(offered_rate=rate, seconds=duration)
    interval = 1.0 / rate
    schedule = list(itertools.takewhile(lambda n: n * interval < duration, itertools.count(first, step)))
    requests = [make_request(n) for n in schedule]
    if any(request.startswith(b"HEAD ") for request in requests):
        raise ValueError("HEAD is not offered: its answer's Content-Length would be waited for")
    generator = _Generator(asyncio.get_running_loop(), host, port, connections, result, on_response,
                           keep_answers)
    with collector_paused():
        began = time.monotonic() if start_at is None else start_at()
        cpu_began = time.process_time()
        sent = 0
        while sent < len(schedule) and generator.failure is None:
            now = time.monotonic()
            while sent < len(schedule) and (due := began + schedule[sent] * interval) <= now:
                generator.submit(schedule[sent], due, requests[sent])
                sent += 1
            if sent < len(schedule):
                await asyncio.sleep(max(TICK, began + schedule[sent] * interval - time.monotonic()))
        generator.scheduled = True
        if generator.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(generator.all_answered), ANSWER_WAIT)
        generator.finished = True
    if generator.outstanding:
        result.errors += generator.outstanding
        result.error_kinds["Timeout"] += generator.outstanding
    for connection in list(generator.opened):
        connection.transport.close()
    result.cpu_seconds = time.process_time() - cpu_began
    if generator.failure is not None:
        raise generator.failure
    return result


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the run, everything alive before it frozen. A
    full collection scans every object of the process (bench/run.py's holds Django, its bidders and
    every request of the schedule): 80-120 ms measured here, during which no request left and no
    answer was read, so the server's latencies showed a stall the server did not cause (at 2,250
    bids/s, a run's worst 100 ms window, 316 slow answers, was that of the generator's collection,
    98 ms; session 10). What a run leaves in cycles (a few objects per failed request) waits for the
    collection after it."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def loop_run(coroutine):
    if uvloop is not None:
        return asyncio.run(coroutine, loop_factory=uvloop.new_event_loop)
    return asyncio.run(coroutine)


def _share(queue, ready, kwargs: dict) -> None:
    """A child process: its share of the schedule; the result goes back through `queue`."""
    try:
        queue.put(loop_run(run(**kwargs)))
    except BaseException as exc:  # the parent must hear of it rather than wait for ever
        ready.abort()
        queue.put(exc)
        raise


def run_processes(*, host: str, port: int, rate: float, duration: float, make_request: Callable[[int], bytes],
                  processes: int = 2, connections: int = 256, keep_answers: bool = False) -> OpenLoopResult:
    """`run` spread over `processes` processes (forked, so `make_request` need not be picklable):
    process k sends requests k, k + N, k + 2N, ... of one schedule of `rate` requests/s, on its own
    share of the `connections`, and the results are merged. The schedule starts once every
    process has made its requests. With one process, `run` in this process (on uvloop when
    installed)."""
    if processes <= 1:
        return loop_run(run(host=host, port=port, rate=rate, duration=duration, make_request=make_request,
                             connections=connections, keep_answers=keep_answers))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ready = context.Barrier(processes + 1)
    start = context.Value("d", 0.0)

    def start_at() -> float:  # in a child: its requests are made; the parent picks the instant
        ready.wait(timeout=300)
        ready.wait(timeout=10)
        return start.value

    children = [context.Process(target=_share, daemon=True, args=(queue, ready, {
        "host": host, "port": port, "rate": rate, "duration": duration, "make_request": make_request,
        "connections": max(1, connections // processes + (k < connections % processes)),
        "keep_answers": keep_answers, "start_at": start_at, "first": k, "step": processes}))
        for k in range(processes)]
    for child in children:
        child.start()
    merged = OpenLoopResult(offered_rate=rate, seconds=duration, processes=processes)
    try:
        try:
            ready.wait(timeout=300)  # every child has made its requests
            start.value = time.monotonic() + 0.2
            ready.wait(timeout=10)
        except threading.BrokenBarrierError:  # a child failed: its exception is in the queue
            pass
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
