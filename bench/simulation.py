"""Bidding bots against a running FlashBid server, over real HTTP (and WebSocket listeners).

Used by `manage.py simulate_bidders` and the benchmarks. The bots are users `sim-0001`… (created in
bulk when missing, with unusable passwords; their access tokens are minted here, so no password
hashing stands between the load and the bid path). Each bot bids strictly rising prices; the
server's answers are counted by status and error code, latencies kept for percentiles.

Snipers (users `snipe-0001`…) wait for the last seconds of the session and then bid its price to
win (from bids/me): on a session with soft close each such bid moves the end, which the report
counts (watch it on the session page).

Loads target loopback unless the caller allows otherwise, and every run is bounded in time.
"""

import asyncio
import collections
import datetime as dt
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

import httpx

from auctions.rules import cents_to_price

LOOPBACK = {"127.0.0.1", "localhost", "::1"}  # urlsplit().hostname drops IPv6 brackets
MAX_DURATION_SECONDS = 600
# An open-loop run never holds more requests in flight than this (a server that stopped answering
# must not make the generator grow without bound).
MAX_IN_FLIGHT = 2_000


def is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK


@dataclass(slots=True)
class Bot:
    user_id: str
    username: str
    token: str
    price_cents: int = 0
    step_cents: int = 1


def bots_prepare(count: int, *, prefix: str = "sim", tokens: bool = True) -> list[Bot]:
    """`count` bidding bots: users `<prefix>-0001`…, created in one bulk insert when missing (and
    their access tokens, unless `tokens` is false)."""
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from accounts.tokens import token_issue
    from accounts.user_cache import user_cache_store
    from core.redis import get_redis

    names = [f"{prefix}-{n:04d}" for n in range(1, count + 1)]
    wanted = set(names)
    # One IN (...) of 100k names is slow to plan; a prefix scan is not.
    candidates = (User.objects.filter(username__startswith=f"{prefix}-") if count > 5_000
                  else User.objects.filter(username__in=names))
    existing = {u.username: u for u in candidates if u.username in wanted}
    unusable = make_password(None)
    missing = [User(username=name, email=f"{name}@bots.flashbid.invalid", password=unusable,
                    weight=1.0 + (n % 5) / 10)
               for n, name in enumerate(names) if name not in existing]
    User.objects.bulk_create(missing, batch_size=2_000)
    users = {**existing, **{u.username: u for u in missing}}
    # bulk_create sends no post_save: fill the users' Redis hashes as registration would have.
    pipe = get_redis().pipeline(transaction=False)
    for user in users.values():
        user_cache_store(user, pipe=pipe)
    pipe.execute()
    return [Bot(user_id=str(users[name].pk), username=name,
                token=token_issue(user_id=str(users[name].pk), token_version=users[name].token_version)[0]
                if tokens else "")
            for name in names]


@dataclass
class Report:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    codes: collections.Counter = field(default_factory=collections.Counter)
    transport_errors: int = 0
    listener_messages: list[int] = field(default_factory=list)
    listener_versions: list[int] = field(default_factory=list)
    last_version: int = 0
    snipes: collections.Counter = field(default_factory=collections.Counter)  # answers to the snipers' bids
    extensions: int = 0
    first_end: str | None = None
    last_end: str | None = None

    @property
    def accepted(self) -> int:
        return self.statuses[201]

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def percentile(self, q: float) -> float:
        """The q-quantile of latency in milliseconds (nearest rank)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    def summary(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        lines = [
            f"requests {self.requests} in {self.seconds:.1f} s ({rate:.0f}/s); accepted {self.accepted} "
            f"({self.accepted / self.seconds if self.seconds else 0:.0f}/s)",
            f"latency p50 {self.percentile(0.50):.1f} ms  p99 {self.percentile(0.99):.1f} ms  "
            f"p99.9 {self.percentile(0.999):.1f} ms",
            "statuses " + (", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())) or "none"),
            "rejected by code " + (", ".join(f"{c}: {n}" for c, n in self.codes.most_common()) or "none"),
        ]
        if self.first_end is not None:  # there were snipers
            lines.append("snipes " + (", ".join(f"{s}: {n}" for s, n in sorted(self.snipes.items())) or "none")
                         + f"; the end moved {self.extensions} time(s): {self.first_end} -> {self.last_end}")
        if self.transport_errors:
            lines.append(f"transport errors {self.transport_errors}")
        if self.listener_messages:
            messages = sorted(self.listener_messages)
            lines.append(f"listeners {len(messages)}: messages each min {messages[0]} / median "
                         f"{messages[len(messages) // 2]} / max {messages[-1]}; final version seen by all: "
                         f"{all(v >= self.last_version for v in self.listener_versions)} "
                         f"(board version {self.last_version})")
        return "\n".join(lines)


async def _opening_cents(client: httpx.AsyncClient, session_id: str) -> int:
    """Above the session's floor and above its highest price so far (bots from an earlier run have
    bids on the board; each bot's next price must beat its own previous one)."""
    response = await client.get(f"/api/sessions/{session_id}")
    response.raise_for_status()
    floor = Decimal(response.json()["upset_price"])
    board = await client.get(f"/api/sessions/{session_id}/leaderboard", params={"page_size": 1})
    board.raise_for_status()
    highest = Decimal(board.json()["highest_price"] or 0)
    return int(max(floor, highest + 1) * 100)


async def _listen(url: str, ws_url: str, report: Report, index: int, stop: asyncio.Event) -> None:
    import websockets

    try:
        # The server checks Origin against ALLOWED_HOSTS, as it does for browsers.
        async with websockets.connect(ws_url, origin=url, max_queue=None) as socket:
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(socket.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                report.listener_messages[index] += 1
                message = json.loads(text)
                board = message.get("board")
                if board:
                    report.listener_versions[index] = max(report.listener_versions[index], board["version"])
    except (OSError, websockets.exceptions.WebSocketException):
        report.transport_errors += 1


async def _snipe(client: httpx.AsyncClient, session_id: str, bot: Bot, report: Report, deadline: float,
                 snipe_seconds: float, rng) -> None:
    """One sniper: watches the (effective) end through the meta, and in its last `snipe_seconds`
    bids the price to win, again whenever it is no longer winning, until the session ends."""
    while time.perf_counter() < deadline:
        meta = await client.get(f"/api/sessions/{session_id}/leaderboard/meta")
        if meta.status_code != 200:
            return
        meta = meta.json()
        if meta["status"] in ("ended", "settled"):
            return
        if report.first_end is None:
            report.first_end = meta["end_time"]
        if report.last_end is None or _parse_time(meta["end_time"]) > _parse_time(report.last_end):
            report.extensions += report.last_end is not None
            report.last_end = meta["end_time"]
        left = (_parse_time(meta["end_time"]) - _parse_time(meta["server_time"]))
        if left > snipe_seconds:
            await asyncio.sleep(min(left - snipe_seconds + rng.random() * snipe_seconds * 0.8, 1.0))
            continue
        mine = await client.get(f"/api/sessions/{session_id}/bids/me", headers={"Authorization": f"Bearer {bot.token}"})
        target = mine.json().get("price_to_win") if mine.status_code in (200, 404) else None
        if target is not None:
            bid = await client.post(f"/api/sessions/{session_id}/bids", json={"price": target},
                                    headers={"Authorization": f"Bearer {bot.token}"})
            report.snipes[bid.status_code] += 1
        await asyncio.sleep(0.3 + rng.random())


def _parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


async def simulate(*, url: str, session_id: str, bots: list[Bot], duration: float, rate: float | None = None,
                   concurrency: int = 32, listeners: int = 0, settle_seconds: float = 1.5,
                   snipers: list[Bot] = (), snipe_seconds: float = 3.0) -> Report:
    """Bid for `duration` seconds: at a fixed offered `rate` (bids/s, open loop: latency counts from
    the planned send time) or, without a rate, as fast as `concurrency` connections allow (closed
    loop). With `listeners`, that many WebSockets watch the session meanwhile and for
    `settle_seconds` after the last bid (to see the final board). `snipers` bid the price to win
    in the session's last `snipe_seconds` (their answers are not in the latency figures)."""
    if not 0 < duration <= MAX_DURATION_SECONDS:
        raise ValueError(f"duration must be within (0, {MAX_DURATION_SECONDS}] seconds")
    report = Report(listener_messages=[0] * listeners, listener_versions=[0] * listeners)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        opening = await _opening_cents(client, session_id)
        for n, bot in enumerate(bots):
            bot.price_cents, bot.step_cents = max(bot.price_cents, opening + n % 97), 1 + n % 7
        stop = asyncio.Event()
        ws_url = url.replace("http", "ws", 1) + f"/ws/sessions/{session_id}/"
        listening = [asyncio.create_task(_listen(url, ws_url, report, i, stop)) for i in range(listeners)]
        # A bot bids again only once its previous bid was answered, so its prices arrive in order.
        free_bots: asyncio.Queue[Bot] = asyncio.Queue()
        for bot in bots:
            free_bots.put_nowait(bot)

        async def bid(planned: float) -> None:
            bot = await free_bots.get()
            bot.price_cents += bot.step_cents
            try:
                response = await client.post(
                    f"/api/sessions/{session_id}/bids", content=f'{{"price": "{cents_to_price(bot.price_cents)}"}}',
                    headers={"Authorization": f"Bearer {bot.token}", "Content-Type": "application/json"})
            except httpx.HTTPError:
                report.transport_errors += 1
                return
            finally:
                free_bots.put_nowait(bot)
            report.latencies.append(time.perf_counter() - planned)
            report.statuses[response.status_code] += 1
            if response.status_code != 201 and response.headers.get("content-type", "").startswith("application/json"):
                report.codes[response.json().get("code", "unknown")] += 1

        began = time.perf_counter()
        deadline = began + duration
        sniping = [asyncio.create_task(_snipe(client, session_id, bot, report, deadline, snipe_seconds,
                                              random.Random(n))) for n, bot in enumerate(snipers)]
        if rate:
            in_flight: set[asyncio.Task] = set()
            interval, n = 1.0 / rate, 0
            while (planned := began + n * interval) < deadline:
                delay = planned - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(in_flight) < MAX_IN_FLIGHT:
                    task = asyncio.create_task(bid(planned))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                else:
                    report.codes["generator_overloaded"] += 1
                n += 1
            if in_flight:
                await asyncio.wait(in_flight, timeout=30)
        else:
            async def closed_loop() -> None:
                while time.perf_counter() < deadline:
                    await bid(time.perf_counter())

            await asyncio.gather(*(closed_loop() for _ in range(concurrency)))
        if sniping:
            await asyncio.gather(*sniping)
        report.seconds = time.perf_counter() - began
        if listening:
            board = await client.get(f"/api/sessions/{session_id}/leaderboard", params={"page_size": 1})
            if board.status_code == 200:
                report.last_version = board.json()["version"]
            settle_deadline = time.perf_counter() + settle_seconds
            while time.perf_counter() < settle_deadline and min(report.listener_versions) < report.last_version:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*listening)
    return report
