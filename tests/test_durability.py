"""A 201 is a promise (ARCHITECTURE.md, "Durability: what FlashBid promises when something fails";
issue 12): the five ways it was broken, each staged against the real stack (daphne, a Celery worker
and beat with fast ticks, PostgreSQL and Redis) and checked from the outside: HTTP answers, plain
Redis commands on the session's keys (`fb:{<session_id>}:<name>`), the ORM models and management
commands. Nothing here imports the engine's modules, so the tests describe behaviour, not code.

1. Redis loses a session's live state after its bids reached PostgreSQL.
2. Redis comes back older than PostgreSQL (simulated with DUMP/RESTORE of the session's keys).
3. A bidder's account is deleted after they bid; a settlement that cannot complete.
4. rebuild_leaderboard while bidders bid.
5. A bid accepted after settlement's final drain (an admin extending end_time during settlement;
   stale params / a clock step).

Written against the code before issue 12's fix (67fa461), where all nine failed; they pass with it.
"""

import datetime as dt
import io
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from auctions.models import Bid, BiddingSession, BidEvent, Ranking
from tests import processes
from tests.assertions import assert_error

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PREFIX = getattr(settings, "REDIS_KEY_PREFIX", "fb")


# --- Redis, seen from outside -------------------------------------------------------------------

def engine_redis(*, decode: bool = True) -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=decode)


def key(session_id, name: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:{name}"


def session_key_names(client: redis.Redis, session_id) -> list:
    """Every key of the session (the hash tag makes them `fb:{<id>}:*`)."""
    return list(client.scan_iter(match=f"{PREFIX}:{{{session_id}}}:*", count=1000))


def to_us(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def redis_now_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def wait_ended(client: redis.Redis, end_time: dt.datetime, timeout: float = 15) -> None:
    end_us = to_us(end_time)
    processes.wait_until(lambda: redis_now_us(client) >= end_us, timeout, interval=0.05,
                         message="the session ended by Redis's clock")


def sibling_db_url(url: str) -> str:
    """The same Redis server, another database: the Celery broker of these tests, so that a FLUSHDB
    of the engine's database does not also drop the worker's task queue."""
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{db - 1 if db > 1 else db + 1}"))


# --- The stack ----------------------------------------------------------------------------------

@dataclass
class Stack:
    base_url: str
    http: httpx.Client
    worker: processes.Process
    web: processes.Process


@pytest.fixture
def stack(started, tmp_path):
    """start(persist=, settle=) runs a Celery worker and beat (ticks every `persist` / `settle`
    seconds) and daphne, sharing one Prometheus directory, and returns an HTTP client on daphne."""
    clients: list[httpx.Client] = []

    def start(*, persist: float, settle: float) -> Stack:
        metrics_dir = tmp_path / "prometheus"
        metrics_dir.mkdir()
        env = {
            "PERSIST_INTERVAL_SECONDS": str(persist),
            "SETTLE_INTERVAL_SECONDS": str(settle),
            "PERSIST_RECLAIM_IDLE_MS": "1000",
            "CELERY_BROKER_URL": sibling_db_url(settings.REDIS_URL),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        worker = started(processes.celery_worker, **env)
        started(processes.celery_beat, **env)
        port = processes.free_port()
        web = started(processes.daphne, port, **env)
        worker.wait_for_log("ready.")
        base_url = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base_url, timeout=15)
        clients.append(http)
        return Stack(base_url=base_url, http=http, worker=worker, web=web)

    yield start
    for http in clients:
        http.close()


# --- HTTP answers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Accepted:
    """What a 201 promised."""
    user_id: str
    price: Decimal
    seq: int
    accepted_at: dt.datetime


def accepted(response: httpx.Response) -> Accepted:
    assert response.status_code == 201, f"{response.status_code}: {response.text[:300]}"
    body = response.json()
    return Accepted(user_id=str(body["user_id"]), price=Decimal(str(body["price"])), seq=int(body["seq"]),
                    accepted_at=dt.datetime.fromisoformat(body["accepted_at"]))


def assert_recovering(response: httpx.Response) -> None:
    """The contract's answer while a session's live state is being restored."""
    assert_error(response, 503, "recovering")
    assert response.headers.get("Retry-After"), "503 recovering without Retry-After"


def assert_no_server_error(response: httpx.Response) -> None:
    if response.status_code == 503:
        assert_recovering(response)
    else:
        assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"


def patiently(request, patience: float = 10.0) -> httpx.Response:
    """Send `request()` until it is not a 503 `recovering` (checked for the contract's shape), for
    at most `patience` seconds; never a 500."""
    last: list[httpx.Response] = []

    def attempt():
        response = request()
        assert_no_server_error(response)
        if response.status_code == 503:
            last[:] = [response]
            return None
        return response

    try:
        return processes.wait_until(attempt, patience, interval=0.1, message="an answer other than 503")
    except TimeoutError:
        return last[-1]


def bid(http: httpx.Client, session_id, headers: dict, price: str) -> httpx.Response:
    return patiently(lambda: http.post(f"/api/sessions/{session_id}/bids", json={"price": price}, headers=headers))


def get_json(http: httpx.Client, path: str) -> dict:
    response = patiently(lambda: http.get(path))
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    return response.json()


@dataclass
class Answer:
    user_id: str
    price: str
    status: int
    body: dict | str
    retry_after: str | None
    at: float  # time.monotonic() when the answer arrived


def answer_of(user_id: str, price: str, response: httpx.Response) -> Answer:
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    return Answer(user_id, price, response.status_code, body, response.headers.get("Retry-After"), time.monotonic())


def code_of(answer: Answer) -> str | None:
    return answer.body.get("code") if isinstance(answer.body, dict) else None


def assert_answers_within(answers: list[Answer], allowed: set[tuple[int, str | None]]) -> None:
    """Every answer is a 201 or one of `allowed` (status, code); a 503 is always `recovering` with
    Retry-After; never a 500."""
    for a in answers:
        assert a.status != 500, f"500 for {a.price}: {a.body}"
        if a.status == 201:
            continue
        if a.status == 503:
            assert code_of(a) == "recovering" and a.retry_after, f"503 without recovering/Retry-After: {a}"
        assert (a.status, code_of(a)) in allowed, f"unexpected answer {a.status} {a.body}"


def accepted_of(answers: list[Answer]) -> list[Accepted]:
    return [Accepted(user_id=str(a.body["user_id"]), price=Decimal(str(a.body["price"])), seq=int(a.body["seq"]),
                     accepted_at=dt.datetime.fromisoformat(a.body["accepted_at"]))
            for a in answers if a.status == 201]


class Bidder(threading.Thread):
    """One bidder bidding ever higher prices (step 1.00, ~8 bids/s, under the rate limit) on daphne
    until stopped; every answer is recorded, nothing is asserted in the thread."""

    def __init__(self, base_url: str, session_id, user, headers: dict, first_price: Decimal, stop: threading.Event):
        super().__init__(daemon=True)
        self.base_url, self.session_id, self.user_id = base_url, session_id, str(user.pk)
        self.headers, self.price, self.stop = headers, first_price, stop
        self.answers: list[Answer] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=15) as http:
            while not self.stop.is_set():
                price = f"{self.price:.2f}"
                try:
                    response = http.post(f"/api/sessions/{self.session_id}/bids", json={"price": price},
                                         headers=self.headers)
                except httpx.HTTPError as exc:  # recorded; the test asserts there were none
                    self.errors.append(exc)
                else:
                    self.answers.append(answer_of(self.user_id, price, response))
                self.price += 1
                self.stop.wait(0.12)


class BoardWatcher(threading.Thread):
    """Polls GET leaderboard/meta (cached up to 1 s by the server) and GET leaderboard (never
    cached) every ~50 ms; records (time, status, version) of each."""

    def __init__(self, base_url: str, session_id):
        super().__init__(daemon=True)
        self.base_url, self.session_id = base_url, session_id
        self.meta: list[tuple[float, int, int | None]] = []
        self.board: list[tuple[float, int, int | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=15) as http:
            while not self.stop.is_set():
                for path, seen in ((f"/api/sessions/{self.session_id}/leaderboard/meta", self.meta),
                                   (f"/api/sessions/{self.session_id}/leaderboard?page_size=1", self.board)):
                    try:
                        response = http.get(path)
                    except httpx.HTTPError:
                        seen.append((time.monotonic(), -1, None))
                        continue
                    version = response.json().get("version") if response.status_code == 200 else None
                    seen.append((time.monotonic(), response.status_code, version))
                self.stop.wait(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(15)


def versions(seen: list[tuple[float, int, int | None]], since: float = 0.0) -> list[int]:
    return [v for at, status, v in seen if status == 200 and at >= since]


def first_decrease(values: list[int]) -> tuple[int, int] | None:
    for before, after in zip(values, values[1:], strict=False):
        if after < before:
            return before, after
    return None


# --- PostgreSQL, seen through the models --------------------------------------------------------

def event_rows(session_id) -> list[tuple[int, str, Decimal, dt.datetime]]:
    return [(seq, str(bidder), price, at) for seq, bidder, price, at in
            BidEvent.objects.filter(session_id=session_id).values_list("seq", "bidder_id", "price", "accepted_at")]


def not_logged_with_their_seq(session_id, promised: list[Accepted]) -> list[Accepted]:
    """The 201s that are not in the bid log exactly once, at the seq their answer named."""
    rows = event_rows(session_id)
    by_seq = {seq: (bidder, price, at) for seq, bidder, price, at in rows}
    contents = [(bidder, price, at) for _, bidder, price, at in rows]
    return [a for a in promised
            if by_seq.get(a.seq) != (a.user_id, a.price, a.accepted_at)
            or contents.count((a.user_id, a.price, a.accepted_at)) != 1]


def not_logged_once(session_id, promised: list[Accepted]) -> list[Accepted]:
    """The 201s whose (bidder, price, accepted_at) is not in the bid log exactly once (any seq)."""
    contents = [(bidder, price, at) for _, bidder, price, at in event_rows(session_id)]
    return [a for a in promised if contents.count((a.user_id, a.price, a.accepted_at)) != 1]


def assert_no_seq_reused_in_the_log(session_id) -> None:
    seqs = [seq for seq, *_ in event_rows(session_id)]
    assert len(seqs) == len(set(seqs)), "two BidEvents share a seq"


def highest_promised(promised: list[Accepted]) -> dict[str, Decimal]:
    best: dict[str, Decimal] = {}
    for a in promised:
        best[a.user_id] = max(best.get(a.user_id, a.price), a.price)
    return best


def ranked_prices(session_id) -> dict[str, Decimal]:
    return {str(bidder): price for bidder, price in
            Ranking.objects.filter(session_id=session_id).values_list("bidder_id", "price")}


def is_settled(session_id) -> bool:
    return BiddingSession.objects.filter(pk=session_id, status="settled").exists()


def wait_settled(session_id, timeout: float) -> None:
    processes.wait_until(lambda: is_settled(session_id), timeout, interval=0.2, message="session settled")


def eventually(predicate, timeout: float, interval: float = 0.2):
    """wait_until that does not raise: the last value of `predicate` (the test asserts on it)."""
    try:
        return processes.wait_until(predicate, timeout, interval)
    except TimeoutError:
        return predicate()


def backends_blocked_by(pid: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
        return cursor.fetchone()[0]


class HeldTransaction(threading.Thread):
    """Runs `grab()` in a transaction on its own connection and keeps it (and its row locks) open
    until the `with` block ends; then rolls it back."""

    def __init__(self, grab):
        super().__init__(daemon=True)
        self.grab = grab
        self.pid: int | None = None
        self.ready, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.pid = cursor.fetchone()[0]
                self.grab()
                self.ready.set()
                self.release.wait(120)
                transaction.set_rollback(True)
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__
            self.error = exc
        finally:
            self.ready.set()
            connection.close()

    def __enter__(self):
        self.start()
        assert self.ready.wait(15) and self.error is None, f"could not hold the transaction: {self.error!r}"
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.join(30)


def in_thread(function, timeout: float):
    """Run `function()` on another thread (its own database connection); its result, or
    TimeoutError if it is still running after `timeout` seconds."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{function} still running after {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def metric_total(text: str, fragment: str) -> float:
    """The sum of every sample whose metric name contains `fragment` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if fragment in name and not name.endswith("_created"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scored_by_price(make_session, **kwargs):
    """A session whose score is the price (alpha 1, beta 0, gamma 0), floor 10.00."""
    return make_session(alpha=1.0, beta=0.0, gamma=0.0, upset_price="10.00", **kwargs)


# --- 1. Redis loses the session after its bids reached PostgreSQL -------------------------------

@pytest.mark.parametrize("loss", ["session_keys_deleted", "flushdb"])
def test_bid_after_redis_lost_the_session_is_ranked_with_everyone_restored(loss, stack, make_session, make_user,
                                                                           auth_header):
    """A 20.00 and B 21.00 (K=1) reach PostgreSQL through the worker; Redis then loses the session
    (its keys deleted, or the whole database flushed). A's 30.00 is accepted onto the restored board,
    which knows B's 21.00, with a seq above PostgreSQL's; after settlement A wins at 30.00 and every
    201 is in the bid log once, at its seq."""
    s = stack(persist=1.0, settle=1.0)
    a, b = make_user(), make_user()
    session = scored_by_price(make_session, starts_in=-1, lasts=10, inventory=1)
    sid, r = str(session.pk), engine_redis()
    promised = [accepted(bid(s.http, sid, auth_header(a), "20.00")),
                accepted(bid(s.http, sid, auth_header(b), "21.00"))]
    processes.wait_until(lambda: BidEvent.objects.filter(session_id=sid).count() == 2, 15,
                         message="both bids persisted by the worker")
    held_seqs = {seq for seq, *_ in event_rows(sid)}
    version_before = get_json(s.http, f"/api/sessions/{sid}/leaderboard")["version"]

    if loss == "flushdb":
        r.flushdb()
    else:
        r.delete(*session_key_names(r, sid))
    assert not session_key_names(r, sid)

    again = bid(s.http, sid, auth_header(a), "30.00")
    promised.append(accepted(again))
    board = get_json(s.http, f"/api/sessions/{sid}/leaderboard")
    assert [(e["user_id"], Decimal(str(e["price"]))) for e in board["entries"]] == [
        (str(a.pk), Decimal("30.00")), (str(b.pk), Decimal("21.00"))], "the board was not restored first"
    assert board["total_bidders"] == 2
    assert again.json()["rank"] == 1 and again.json()["is_winning"] is True
    assert promised[-1].seq > max(held_seqs), "a seq PostgreSQL already holds was handed out again"
    assert board["version"] > version_before, "the board version went backwards"

    lower = bid(s.http, sid, auth_header(b), "20.50")
    assert lower.status_code == 409 and lower.json()["code"] == "not_higher", lower.text

    wait_settled(sid, 20)
    results = get_json(s.http, f"/api/sessions/{sid}/results")
    assert [(w["user_id"], Decimal(str(w["price"]))) for w in results["winners"]] == [(str(a.pk), Decimal("30.00"))]
    assert Decimal(str(results["final_price"])) == Decimal("30.00")
    assert not not_logged_with_their_seq(sid, promised)
    assert_no_seq_reused_in_the_log(sid)
    assert ranked_prices(sid) == highest_promised(promised)


# --- 2. Redis comes back older than PostgreSQL --------------------------------------------------

def test_bids_after_redis_came_back_older_than_postgresql_are_all_kept_and_ranked(stack, make_session, make_user,
                                                                                  auth_header):
    """Redis's copy of the session is snapshotted (DUMP) after A 20.00 and B 21.00 were persisted;
    C 22.00 and A 25.00 are accepted and persisted; the old snapshot is then put back (RESTORE), as
    when Redis loses its last writes. The bids after that (D 24.00, B 23.00, C 26.00, and A 22.00,
    below A's own 25.00: refused, or accepted and superseded) are all kept: each 201 in the log
    exactly once (a seq collision is counted in /metrics and kept under a new seq), each bidder
    ranked at their highest accepted price, the board version never going back once noticed."""
    s = stack(persist=1.0, settle=1.0)
    a, b, c, d = (make_user() for _ in range(4))
    session = scored_by_price(make_session, starts_in=-1, lasts=11, inventory=2)
    sid, r, raw = str(session.pk), engine_redis(), engine_redis(decode=False)

    with BoardWatcher(s.base_url, sid) as watcher:
        promised = [accepted(bid(s.http, sid, auth_header(a), "20.00")),
                    accepted(bid(s.http, sid, auth_header(b), "21.00"))]
        processes.wait_until(lambda: BidEvent.objects.filter(session_id=sid).count() == 2, 15,
                             message="the first two bids persisted")
        snapshot = {}
        for name in session_key_names(r, sid):
            # Value and time to live read in one transaction: read apart, a key that expired in
            # between (the drain lease, released just then) came back below with no expiry at
            # all, a lease held for ever, and the session was never settled.
            pipe = raw.pipeline(transaction=True)
            pipe.dump(name)
            pipe.pttl(name)
            dumped, ttl = pipe.execute()
            if dumped is not None:
                snapshot[name] = (dumped, ttl)

        promised += [accepted(bid(s.http, sid, auth_header(c), "22.00")),
                     accepted(bid(s.http, sid, auth_header(a), "25.00"))]
        processes.wait_until(lambda: BidEvent.objects.filter(session_id=sid).count() == 4, 15,
                             message="the next two bids persisted")
        held_seqs = {seq for seq, *_ in event_rows(sid)}
        version_before = max(versions(watcher.meta) + versions(watcher.board)
                             + [int(r.hget(key(sid, "meta"), "ver") or 0)])

        restored_at = time.monotonic()
        raw.delete(*session_key_names(r, sid))
        for name, (dumped, ttl) in snapshot.items():
            raw.restore(name, max(ttl, 0), dumped, replace=True)  # -1, no expiry: 0 (none)

        after = [accepted(bid(s.http, sid, auth_header(d), "24.00")),
                 accepted(bid(s.http, sid, auth_header(b), "23.00")),
                 accepted(bid(s.http, sid, auth_header(c), "26.00"))]
        below_own = bid(s.http, sid, auth_header(a), "22.00")
        assert below_own.status_code in (201, 409), below_own.text
        if below_own.status_code == 409:
            assert below_own.json()["code"] == "not_higher"
        else:
            after.append(accepted(below_own))
        promised += after

        wait_settled(sid, 25)
        final_version = get_json(s.http, f"/api/sessions/{sid}/leaderboard")["version"]
        processes.wait_until(lambda: versions(watcher.meta, since=restored_at)
                             and versions(watcher.meta, since=restored_at)[-1] == final_version, 5,
                             message="meta caught up with the settled board")

    assert not not_logged_once(sid, promised), "accepted bids missing from (or doubled in) the bid log"
    assert_no_seq_reused_in_the_log(sid)
    assert len(event_rows(sid)) == len(promised)
    if any(x.seq in held_seqs for x in after):  # a 201 named a seq PostgreSQL already held
        text = s.http.get("/metrics").text
        assert metric_total(text, "seq_conflict") > 0, "a seq collision was not counted in /metrics"
    assert ranked_prices(sid) == highest_promised(promised)
    assert ranked_prices(sid)[str(a.pk)] == Decimal("25.00")
    results = get_json(s.http, f"/api/sessions/{sid}/results")
    assert [w["user_id"] for w in results["winners"]] == [str(c.pk), str(a.pk)]

    assert final_version > version_before, "the settled board's version is not above the one before the loss"
    for seen in (watcher.meta, watcher.board):
        since_restore = versions(seen, since=restored_at)
        noticed = [i for i, v in enumerate(since_restore) if v > version_before]
        assert noticed, "the board version never rose above the one before the loss"
        assert first_decrease(since_restore[noticed[0]:]) is None, "the board version went backwards"


# --- 3. A bidder's account is deleted after they bid --------------------------------------------

def test_a_bidder_whose_bid_reached_postgresql_cannot_be_deleted_and_the_session_settles(
        stack, make_session, make_user, auth_header, client):
    """Deleting a user whose bid the worker persisted is refused (ProtectedError), from code and
    from the Django admin, which says to deactivate instead; the session settles normally."""
    s = stack(persist=1.0, settle=1.0)
    victim, rival = make_user(), make_user()
    admin = make_user(is_staff=True, is_superuser=True)
    session = scored_by_price(make_session, starts_in=-1, lasts=7, inventory=1)
    sid = str(session.pk)
    promised = [accepted(bid(s.http, sid, auth_header(victim), "30.00")),
                accepted(bid(s.http, sid, auth_header(rival), "20.00"))]
    processes.wait_until(lambda: BidEvent.objects.filter(session_id=sid).count() == 2, 15,
                         message="both bids persisted by the worker")

    with pytest.raises(ProtectedError):
        User.objects.get(pk=victim.pk).delete()
    assert User.objects.filter(pk=victim.pk).exists()

    client.force_login(admin)
    url = reverse("admin:accounts_user_delete", args=[victim.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "deactivate" in page.content.decode().lower(), "the admin does not say to deactivate instead"
    client.post(url, {"post": "yes"})
    assert User.objects.filter(pk=victim.pk).exists(), "the admin deleted a user who bid"

    wait_settled(sid, 15)
    results = get_json(s.http, f"/api/sessions/{sid}/results")
    assert [(w["user_id"], Decimal(str(w["price"]))) for w in results["winners"]] == [
        (str(victim.pk), Decimal("30.00"))]
    assert ranked_prices(sid) == highest_promised(promised)
    assert not not_logged_with_their_seq(sid, promised)


def test_a_bidder_whose_bid_is_only_in_redis_cannot_be_deleted_and_is_ranked(stack, make_session, make_user,
                                                                              auth_header):
    """No persist tick comes (the settlement drains the stream itself): deleting a user whose bid
    PostgreSQL does not hold yet is refused all the same, and the settled ranking has their bid."""
    s = stack(persist=3600, settle=1.0)
    victim, rival = make_user(), make_user()
    session = scored_by_price(make_session, starts_in=-1, lasts=4, inventory=1)
    sid = str(session.pk)
    promised = [accepted(bid(s.http, sid, auth_header(victim), "30.00")),
                accepted(bid(s.http, sid, auth_header(rival), "20.00"))]
    assert not Bid.objects.filter(session_id=sid).exists() and not BidEvent.objects.filter(session_id=sid).exists()

    with pytest.raises(ProtectedError):
        User.objects.get(pk=victim.pk).delete()
    assert User.objects.filter(pk=victim.pk).exists()

    wait_settled(sid, 15)
    results = get_json(s.http, f"/api/sessions/{sid}/results")
    assert [w["user_id"] for w in results["winners"]] == [str(victim.pk)]
    assert ranked_prices(sid) == highest_promised(promised)
    assert not not_logged_with_their_seq(sid, promised)


def test_admin_settle_answers_a_contract_error_never_a_500_when_settlement_cannot_complete(
        stack, make_session, make_user, auth_header):
    """A bidder vanishes from PostgreSQL behind the ORM's back (raw SQL: the one way left once
    deletion is refused) while their bid is only in Redis: the settlement cannot reconcile Redis's
    ranking with PostgreSQL. POST /api/admin/sessions/{id}/settle answers JSON: the results if it
    settled anyway, else the contract's {"detail", "code"}; never a 500, never HTML."""
    s = stack(persist=3600, settle=1.0)
    vanished, rival = make_user(), make_user()
    admin = make_user(is_staff=True)
    session = scored_by_price(make_session, starts_in=-1, lasts=3, inventory=1)
    sid = str(session.pk)
    accepted(bid(s.http, sid, auth_header(vanished), "30.00"))
    accepted(bid(s.http, sid, auth_header(rival), "20.00"))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {User._meta.db_table} WHERE id = %s", [vanished.pk])
    wait_ended(engine_redis(), session.end_time)

    response = s.http.post(f"/api/admin/sessions/{sid}/settle", headers=auth_header(admin))
    assert response.status_code != 500, response.text[:300]
    assert response.headers.get("content-type", "").startswith("application/json"), response.text[:300]
    if response.status_code == 200:
        assert response.json()["session_id"] == sid
    else:
        body = response.json()
        assert set(body) == {"detail", "code"} and body["detail"] and body["code"], body
        assert 400 <= response.status_code < 600


# --- 4. rebuild_leaderboard while bidders bid ---------------------------------------------------

def test_rebuild_leaderboard_during_bidding_loses_no_bid_and_never_lowers_seq_or_version(
        stack, make_session, make_user, auth_header):
    """20 bidders bid ever higher through daphne while the worker persists every 2 s; twice,
    with accepted bids not yet persisted, `rebuild_leaderboard` runs. Afterwards Redis's seq is at
    least every seq a 201 named, no seq is handed out twice, every 201 is in the bid log once at
    its seq, and neither meta's nor the board's version ever decreased."""
    s = stack(persist=2.0, settle=3600)
    users = [make_user() for _ in range(20)]
    session = scored_by_price(make_session, starts_in=-1, lasts=120, inventory=5)
    sid, r = str(session.pk), engine_redis()
    stop = threading.Event()
    bidders = [Bidder(s.base_url, sid, u, auth_header(u), Decimal(11 + n), stop) for n, u in enumerate(users)]

    def promised_now() -> list[Accepted]:
        return accepted_of([a for bidder in bidders for a in list(bidder.answers)])

    def unpersisted() -> int:
        return r.xlen(key(sid, "stream"))

    after_rebuilds: list[tuple[int, int]] = []  # (largest seq a 201 named, Redis's seq) after each rebuild
    with BoardWatcher(s.base_url, sid) as watcher:
        try:
            for bidder in bidders:
                bidder.start()
            for _ in range(2):
                target = len(promised_now()) + 40
                processes.wait_until(lambda t=target: len(promised_now()) >= t and unpersisted() > 0
                                     and BidEvent.objects.filter(session_id=sid).exists(), 15,
                                     interval=0.05, message="bids persisted, and more accepted not yet persisted")
                call_command("rebuild_leaderboard", sid, stdout=io.StringIO())
                largest = max(a.seq for a in promised_now())
                after_rebuilds.append((largest, int(r.hget(key(sid, "meta"), "seq") or 0)))
            target = len(promised_now()) + 40
            processes.wait_until(lambda: len(promised_now()) >= target, 15, interval=0.05,
                                 message="bidding went on after the rebuilds")
        finally:
            stop.set()
            for bidder in bidders:
                bidder.join(15)

        answers = [a for bidder in bidders for a in bidder.answers]
        promised = accepted_of(answers)
        eventually(lambda: len(event_rows(sid)) >= len(promised) and not not_logged_with_their_seq(sid, promised), 15,
                   interval=0.5)

    assert not [e for bidder in bidders for e in bidder.errors]
    assert_answers_within(answers, {(429, "rate_limited"), (503, "recovering")})
    for largest, redis_seq in after_rebuilds:
        assert redis_seq >= largest, f"rebuild set Redis's seq to {redis_seq}, below a 201's seq {largest}"
    seqs = [a.seq for a in promised]
    assert len(seqs) == len(set(seqs)), "a seq was handed out twice"
    lost = not_logged_with_their_seq(sid, promised)
    assert not lost, f"{len(lost)} of {len(promised)} accepted bids are not in the log at their seq"
    assert len(event_rows(sid)) == len(promised)
    assert versions(watcher.meta) and versions(watcher.board)
    assert first_decrease(versions(watcher.meta)) is None, "meta's version went backwards"
    assert first_decrease(versions(watcher.board)) is None, "the board's version went backwards"


# --- 5. A bid accepted after settlement's final drain -------------------------------------------

def test_end_time_extended_during_settlement_reopens_bidding_until_the_new_end(stack, make_session, make_user,
                                                                               auth_header):
    """The session ends by the clock; the worker's settlement starts and is held in its drain (the
    test holds the session's Bid rows); meanwhile an admin moves end_time 5 s into the future
    (saving the session through the ORM, as the admin does). The settlement must not settle on the
    old end: bids are accepted again until the new end, the session settles after it, and every
    201 is ranked and logged."""
    s = stack(persist=3600, settle=1.0)
    a, b, c = make_user(), make_user(), make_user()
    session = scored_by_price(make_session, starts_in=-1, lasts=4, inventory=2)
    sid, r = str(session.pk), engine_redis()
    promised = [accepted(bid(s.http, sid, auth_header(a), "20.00")),
                accepted(bid(s.http, sid, auth_header(b), "21.00"))]
    call_command("persist_bids", stdout=io.StringIO())
    assert BidEvent.objects.filter(session_id=sid).count() == 2
    promised.append(accepted(bid(s.http, sid, auth_header(a), "25.00")))  # in the stream only
    answers: list[Answer] = []

    with HeldTransaction(lambda: list(Bid.objects.select_for_update().filter(session_id=sid))) as held:
        wait_ended(r, session.end_time)
        processes.wait_until(lambda: backends_blocked_by(held.pid) or is_settled(sid), 15, interval=0.05,
                             message="the worker's settlement reached the held Bid rows")
        if is_settled(sid):
            pytest.fail("the settlement never waited on the session's Bid rows: the extension could not be "
                        "staged during the settlement")

        def extend():
            edited = BiddingSession.objects.get(pk=sid)
            edited.end_time = edited.scheduled_end_time = timezone.now() + dt.timedelta(seconds=5)
            edited.save()
            return edited.end_time

        new_end = in_thread(extend, timeout=5)
        during = bid(s.http, sid, auth_header(c), "30.00")
        answers.append(answer_of(str(c.pk), "30.00", during))
    released_at = time.monotonic()

    prices = iter(range(31, 1000))

    def accepted_again() -> bool:
        price = f"{next(prices)}.00"
        answers.append(answer_of(str(c.pk), price, bid(s.http, sid, auth_header(c), price)))
        return answers[-1].status == 201

    eventually(accepted_again, max(0.5, (new_end - timezone.now()).total_seconds() - 0.5), interval=0.1)
    wait_settled(sid, (new_end - timezone.now()).total_seconds() + 12)

    assert_answers_within(answers, {(409, "session_ended"), (429, "rate_limited"), (503, "recovering")})
    settled = BiddingSession.objects.get(pk=sid)
    assert settled.settled_at >= new_end, (
        f"settled at {settled.settled_at:%H:%M:%S.%f}, before the new end {new_end:%H:%M:%S.%f}")
    again = [x for x in answers if x.status == 201 and x.at >= released_at]
    assert again, "no bid was accepted again before the new end"
    promised += accepted_of(answers)
    assert all(x.accepted_at < new_end for x in promised)
    assert ranked_prices(sid) == highest_promised(promised)
    assert not not_logged_with_their_seq(sid, promised)


def test_no_bid_is_accepted_after_settlements_final_drain_even_with_stale_params(stack, make_session, make_user,
                                                                                 auth_header):
    """After the end, the session's Redis params are made to say it ends in an hour (stale params, a
    clock step), so Redis would go on accepting bids; a bidder keeps bidding while the worker
    settles. The settlement is held after its drain (the test holds an uncommitted Ranking row the
    settlement's own rows collide with), which widens the window: every 201 must be in the settled
    ranking and the log, so once the settlement has closed the session no 201 is given."""
    s = stack(persist=1.0, settle=1.0)
    a, b = make_user(), make_user()
    session = scored_by_price(make_session, starts_in=-1, lasts=4, inventory=1)
    sid, r = str(session.pk), engine_redis()
    promised = [accepted(bid(s.http, sid, auth_header(a), "20.00")),
                accepted(bid(s.http, sid, auth_header(b), "21.00"))]

    def collide():
        Ranking.objects.create(session_id=sid, bidder=b, rank=1, price=Decimal("21.00"), score=21.0, seq=2,
                               is_winner=True)

    stop = threading.Event()
    bidder = Bidder(s.base_url, sid, a, auth_header(a), Decimal("22.00"), stop)
    try:
        with HeldTransaction(collide) as held:
            wait_ended(r, session.end_time)
            r.hset(key(sid, "params"), "end_us", str(redis_now_us(r) + 3600 * 1_000_000))
            bidder.start()
            processes.wait_until(lambda: backends_blocked_by(held.pid) or is_settled(sid), 15, interval=0.05,
                                 message="the worker's settlement reached its ranking write")
            mark = len(bidder.answers)
            processes.wait_until(lambda: len(bidder.answers) >= mark + 3, 10, interval=0.05,
                                 message="bids sent while the settlement is past its drain")
        wait_settled(sid, 15)
        mark = len(bidder.answers)
        processes.wait_until(lambda: len(bidder.answers) >= mark + 3, 10, interval=0.05,
                             message="bids sent after the settlement")
    finally:
        stop.set()
        bidder.join(15)

    assert not bidder.errors
    assert_answers_within(bidder.answers, {(409, "session_ended"), (429, "rate_limited"), (503, "recovering")})
    promised += accepted_of(bidder.answers)
    lost = not_logged_with_their_seq(sid, promised)
    assert not lost, f"accepted after the final drain and never logged: {lost}"
    assert ranked_prices(sid) == highest_promised(promised)
    assert bidder.answers[-1].status == 409 and code_of(bidder.answers[-1]) == "session_ended"
