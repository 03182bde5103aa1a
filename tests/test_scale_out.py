"""deploy/scale-out.sh end to end: the multi-process system on this machine, wired as
deploy/docker-compose.yml is (nginx with TLS in front of two uvicorns for HTTP and, here, two
uvicorns for the WebSockets, PgBouncer in front of the test database, the script's own Redis from
deploy/redis.conf with a password, one Celery worker, one beat, Flower, these three at nice 10),
driven from outside like a client would: bids through nginx over HTTPS (trusting the self-signed
certificate the script made) with Bearer tokens, sockets through nginx (wss) and straight to each
sockets' process, readiness on nginx's internal server, then PostgreSQL, the settlement and PgBouncer's own
console (as its admin user) checked. The script is stopped at the end whatever happened
(`scale-out.sh stop`, then the script itself). Twice: as it comes, and in the cluster shape
(SCALE_OUT_REDIS_CLUSTER=1: the engine on a Redis Cluster of 3 masters of its own, the plain Redis
keeping the broker, the channel layer and the cache)."""

import asyncio
import json
import re
import ssl
import subprocess
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg
import pytest
import redis
import websockets
from django.conf import settings as django_settings
from django.db import connection

from auctions.models import Bid, BidEvent, Ranking
from auctions.rules import RankedBid, settle
from tests import processes
from tests.redis_cluster import spare_ports

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

SCRIPT = processes.ROOT / "deploy" / "scale-out.sh"
# DEBUG is off in the scale-out, so it needs a real-looking key; this test signs its tokens with it.
SECRET_KEY = "scale-out-system-test-key-not-a-secret-0123456789"
SESSION_SECONDS = 10.0
PUSH_TIMEOUT = 10.0


@dataclass
class ScaleOut:
    http_port: int
    https_port: int
    internal_port: int
    web_ports: tuple[int, int]
    ws_ports: tuple[int, int]
    pgbouncer_port: int
    redis_port: int
    flower_port: int
    run_dir: Path
    cluster_ports: tuple[int, ...] = ()

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def internal(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def ssl(self) -> ssl.SSLContext:
        """Trusts the self-signed certificate the script made for nginx."""
        return ssl.create_default_context(cafile=self.run_dir / "tls" / "cert.pem")

    def nice(self, name: str) -> int:
        """The nice value of a running process of the scale-out."""
        pid = (self.run_dir / "pids" / f"{name}.pid").read_text().strip()
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    def environ(self, name: str) -> dict[str, str]:
        """The environment a running process of the scale-out was started with."""
        pid = (self.run_dir / "pids" / f"{name}.pid").read_text().strip()
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.fixture
def scale_out(request, tmp_path, transactional_db, settings):
    for binary in ("nginx", "pgbouncer", "redis-server"):
        if not any(Path(d, binary).exists() for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin")):
            pytest.fail(f"{binary} is not installed: run the suite through deploy/test.sh, which installs it")
    ports = [processes.free_port() for _ in range(10)]
    cluster_ports = tuple(spare_ports(3, first=7301)) if getattr(request, "param", "plain") == "cluster" else ()
    so = ScaleOut(http_port=ports[0], https_port=ports[6], internal_port=ports[7], web_ports=(ports[1], ports[2]),
                  ws_ports=(ports[8], ports[9]), pgbouncer_port=ports[3], redis_port=ports[4], flower_port=ports[5],
                  run_dir=tmp_path / "scale-out", cluster_ports=cluster_ports)
    env = processes.test_env(
        SCALE_OUT_DIR=str(so.run_dir), SCALE_OUT_HTTP_PORT=str(so.http_port),
        SCALE_OUT_HTTPS_PORT=str(so.https_port), SCALE_OUT_INTERNAL_PORT=str(so.internal_port),
        SCALE_OUT_WEB_PORTS=" ".join(map(str, so.web_ports)), SCALE_OUT_WS_PORTS=" ".join(map(str, so.ws_ports)),
        SCALE_OUT_PGBOUNCER_PORT=str(so.pgbouncer_port),
        SCALE_OUT_REDIS_PORT=str(so.redis_port), SCALE_OUT_FLOWER_PORT=str(so.flower_port),
        SCALE_OUT_BOOTSTRAP="0", SCALE_OUT_WORKER_CONCURRENCY="1",
        # The tokens this test makes are signed with SECRET_KEY: the processes verify with it too.
        DEBUG="false", SECRET_KEY=SECRET_KEY, JWT_SIGNING_KEY=SECRET_KEY, STATIC_ROOT=str(tmp_path / "static"),
        LOG_FORMAT="plain",
        PERSIST_INTERVAL_SECONDS="1", SETTLE_INTERVAL_SECONDS="1",
        SLOW_REQUEST_MS="0",  # every request logged by the web process, with its request id
        SCALE_OUT_REDIS_CLUSTER="1" if cluster_ports else "0",
        SCALE_OUT_REDIS_CLUSTER_PORTS=" ".join(map(str, cluster_ports)),
    )
    settings.JWT_SIGNING_KEY = SECRET_KEY
    script = processes.Process("scale-out", [str(SCRIPT)], env, tmp_path)
    try:
        began = time.monotonic()
        script.wait_for_log("FlashBid scale-out ready.", timeout=120)
        print(f"\nscale-out up in {time.monotonic() - began:.1f} s")
        yield so
    finally:
        began = time.monotonic()
        stop = subprocess.run([str(SCRIPT), "stop"], cwd=processes.ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
        script.stop()
        print(f"scale-out stopped in {time.monotonic() - began:.1f} s: {stop.stdout.strip()} {stop.stderr.strip()}")
        assert not list((so.run_dir / "pids").glob("*.pid")), "pid files left: something was not stopped"


async def _receive_until(socket, frames: list[dict], predicate, timeout: float) -> bool:
    """Frames from the socket, appended to `frames`, until `predicate(frames)` holds (True) or the
    time runs out (False)."""
    deadline = time.monotonic() + timeout
    while not predicate(frames):
        try:
            frame = await asyncio.wait_for(socket.recv(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return False
        frames.append(json.loads(frame))
    return True


def _kinds(frames: list[dict]) -> list[str]:
    return [f["type"] for f in frames]


async def _bid_and_listen(so: ScaleOut, session_id: str, plan: list[tuple[str, str]]):
    """Sockets through nginx (wss) and straight to each sockets' process (ws); then every bid through nginx;
    then what each socket receives until it has the board at the final version, and then until the
    results (or the time runs out: the caller asserts on the frames)."""
    endpoints = {"nginx": f"wss://127.0.0.1:{so.https_port}", "ws1": f"ws://127.0.0.1:{so.ws_ports[0]}",
                 "ws2": f"ws://127.0.0.1:{so.ws_ports[1]}"}
    sockets, frames = {}, {name: [] for name in endpoints}
    try:
        for name, base in endpoints.items():
            tls = {"ssl": so.ssl} if base.startswith("wss:") else {}
            sockets[name] = await websockets.connect(f"{base}/ws/sessions/{session_id}/",
                                                     origin=base.replace("ws", "http", 1), open_timeout=15, **tls)
            assert await _receive_until(sockets[name], frames[name], len, 15), f"no snapshot on {name}"
        replies = []
        async with httpx.AsyncClient(base_url=so.https, verify=so.ssl, timeout=15) as http:
            for token, price in plan:
                response = await http.post(f"/api/sessions/{session_id}/bids", json={"price": price},
                                           headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 201, response.text
                replies.append(response.json())
            board = (await http.get(f"/api/sessions/{session_id}/leaderboard")).json()

        def final_board(got):
            return any(f["type"] == "board" and f["board"]["version"] >= board["version"] for f in got)

        def settled(got):
            return "results" in _kinds(got)

        await asyncio.gather(*(_receive_until(sockets[n], frames[n], final_board, PUSH_TIMEOUT) for n in sockets))
        await asyncio.gather(*(_receive_until(sockets[n], frames[n], settled, SESSION_SECONDS + 20)
                               for n in sockets))
        return replies, board, frames
    finally:
        for socket in sockets.values():
            await socket.close()


@pytest.mark.parametrize("scale_out", ["plain", "cluster"], indirect=True)
def test_scale_out_bids_through_nginx_pushes_on_both_socket_processes_and_settles_through_pgbouncer(
        scale_out, make_user, make_session, token_for):
    so = scale_out
    test_db = connection.settings_dict["NAME"]

    # Every long-running process reaches PostgreSQL through PgBouncer, with no Django pool, and
    # Redis with its password.
    redis_password = (so.run_dir / "redis_password").read_text().strip()
    for name in ("web1", "web2", "ws1", "ws2", "worker", "beat"):
        environ = so.environ(name)
        url = urlparse(environ["DATABASE_URL"])
        assert (url.port, url.path.lstrip("/"), environ["DATABASE_POOL"]) == (so.pgbouncer_port, test_db, "false")
        assert url.password  # PgBouncer asks every client for a password (SCRAM)
        for key in ("REDIS_URL", "CELERY_BROKER_URL"):
            assert urlparse(environ[key]).password == redis_password, (name, key)
    # The background processes yield the CPU to the web processes.
    assert {name: so.nice(name) for name in ("web1", "ws1", "worker", "beat", "flower")} == {
        "web1": 0, "ws1": 0, "worker": 10, "beat": 10, "flower": 10}
    # That Redis refuses whoever does not know it.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=so.redis_port).ping()
    assert redis.Redis(host="127.0.0.1", port=so.redis_port, password=redis_password).ping()
    if so.cluster_ports:  # the engine on the cluster; the broker, the channel layer and the cache here
        for name in ("web1", "web2", "worker"):
            environ = so.environ(name)
            assert environ["REDIS_CLUSTER"] == "true" and urlparse(environ["REDIS_URL"]).port in so.cluster_ports
            assert {urlparse(environ[key]).port for key in ("CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "CACHE_URL")
                    } == {so.redis_port}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=so.cluster_ports[1]).ping()

    # Plain HTTP answers only with a redirect to HTTPS.
    redirect = httpx.get(f"http://127.0.0.1:{so.http_port}/api/sessions", timeout=15)
    assert (redirect.status_code, redirect.headers["location"]) == (301, f"{so.https}/api/sessions")
    with httpx.Client(base_url=so.https, verify=so.ssl, timeout=15) as http:
        # nginx: static files itself (DEBUG is off: Django would not serve them), one request id per
        # response (the client's when sane, else nginx's).
        static = http.get("/static/admin/css/base.css")
        assert static.status_code == 200 and static.headers["server"] == "nginx"
        given = http.get("/healthz", headers={"X-Request-ID": "scale-out-test-1"})
        assert given.headers.get_list("x-request-id") == ["scale-out-test-1"]
        assert re.fullmatch(r"[0-9a-f]{32}", http.get("/healthz").headers["x-request-id"])
        # The security headers on the app's answers too: one HSTS, frame and type option each, and
        # a Content-Security-Policy (the app's own where it sets one, else nginx's).
        for answer in (http.get("/api/sessions"), static, http.get("/login/")):
            headers = answer.headers
            assert headers.get_list("strict-transport-security") == ["max-age=300; includeSubDomains"], answer.url
            assert headers.get_list("x-frame-options") == ["DENY"], answer.url
            assert headers.get_list("x-content-type-options") == ["nosniff"], answer.url
            assert len(headers.get_list("content-security-policy")) == 1, answer.url
        # Readiness and metrics are not public ...
        assert http.get("/readyz").status_code == 404 and http.get("/metrics").status_code == 404
    # ... but on nginx's internal server: readiness through PgBouncer and the passworded Redis.
    with httpx.Client(base_url=so.internal, timeout=15) as internal:
        assert internal.get("/readyz").json()["checks"] == {"postgres": "ok", "redis": "ok", "broker": "ok"}
        assert "flashbid_" in internal.get("/metrics").text
    flower = f"http://127.0.0.1:{so.flower_port}/"
    assert httpx.get(flower, timeout=10).status_code == 401
    user, password = (so.run_dir / "flower_basic_auth").read_text().strip().split(":", 1)
    assert httpx.get(flower, auth=(user, password), timeout=10).status_code == 200

    users = [make_user() for _ in range(6)]
    session = make_session(starts_in=-1, lasts=SESSION_SECONDS, inventory=3, alpha=1.0, beta=5.0, gamma=0.5)
    plan = [(token_for(u), f"{20 + 3 * n}.{n:02d}") for n, u in enumerate(users)]
    plan += [(token_for(users[0]), "99.00"), (token_for(users[1]), "98.50")]  # two raise their bids
    replies, board, frames = asyncio.run(_bid_and_listen(so, str(session.pk), plan))

    # PostgreSQL holds every accepted bid (history and current bid per bidder), and the settlement.
    latest = {}
    for reply in replies:
        if reply["user_id"] not in latest or reply["seq"] > latest[reply["user_id"]]["seq"]:
            latest[reply["user_id"]] = reply
    events = dict(BidEvent.objects.filter(session=session).values_list("seq", "price"))
    assert events == {r["seq"]: Decimal(r["price"]) for r in replies}
    bids = {str(b): (p, s) for b, p, s in Bid.objects.filter(session=session).values_list("bidder_id", "price", "seq")}
    assert bids == {u: (Decimal(r["price"]), r["seq"]) for u, r in latest.items()}
    expected = settle([RankedBid(bidder_id=u, price=Decimal(r["price"]), score=r["score"], seq=r["seq"])
                       for u, r in latest.items()], inventory=session.inventory)
    session.refresh_from_db()
    assert session.status == "settled" and session.final_price == expected.final_price
    rankings = list(Ranking.objects.filter(session=session).order_by("rank").values_list("bidder_id", "is_winner"))
    assert [str(b) for b, _ in rankings] == [bid.bidder_id for bid in expected.ranking]
    assert sum(winner for _, winner in rankings) == expected.winners == 3
    if so.cluster_ports:  # the session's live state is on the cluster, none of it on the plain Redis
        cluster = redis.RedisCluster(host="127.0.0.1", port=so.cluster_ports[0], password=redis_password)
        assert cluster.zcard(f"{django_settings.REDIS_KEY_PREFIX}:{{{session.pk}}}:rank") == len(latest)
        assert not redis.Redis(host="127.0.0.1", port=so.redis_port, password=redis_password).exists(
            f"{django_settings.REDIS_KEY_PREFIX}:{{{session.pk}}}:rank")
        cluster.close()

    # That traffic went through PgBouncer (its own console, as its admin: not the app's user), in
    # transaction pooling.
    with psycopg.connect(host="127.0.0.1", port=so.pgbouncer_port, user="pgbouncer_admin",
                         password=(so.run_dir / "pgbouncer_admin_password").read_text().strip(),
                         dbname="pgbouncer", autocommit=True) as console:
        def rows(command: str) -> list[dict]:
            cursor = console.execute(command)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        stats = {row["database"]: row for row in rows("SHOW STATS")}
        pools = {row["database"]: row for row in rows("SHOW POOLS")}
    assert stats[test_db]["total_xact_count"] > len(replies), stats.get(test_db)
    assert pools[test_db]["pool_mode"] == "transaction"

    # nginx spread the requests over both uvicorns.
    access = (so.run_dir / "logs" / "nginx" / "access.log").read_text()
    upstreams = set(re.findall(r'"POST /api/sessions/\S+/bids HTTP/1.1" 201 .* upstream=127\.0\.0\.1:(\d+)', access))
    assert upstreams == {str(port) for port in so.web_ports}
    assert "request_id=scale-out-test-1" in access
    # ... and the uvicorn that served it logged under the same id (nginx → uvicorn).
    web_logs = "".join((so.run_dir / "logs" / f"web{n}.log").read_text() for n in (1, 2))
    assert "[scale-out-test-1] slow request GET /healthz 200" in web_logs

    # Every socket, on either sockets' process or through nginx, got the snapshot, the coalesced board at the
    # final state and the results of the settlement.
    for name, got in frames.items():
        kinds = _kinds(got)
        assert kinds[0] == "snapshot", (name, kinds)
        # (The settlement bumps the version once more: its board, status settled, may follow.)
        pushed = next((f["board"] for f in got if f["type"] == "board" and f["board"]["version"] >= board["version"]),
                      None)
        assert pushed is not None, (f"{name}: no board push at the final version {board['version']}", kinds)
        assert pushed["entries"] == board["entries"], name
        assert "results" in kinds, (f"{name}: no results push", kinds)
        # "ended" comes once when the end passes by Redis's clock, unless the settlement (every
        # second here) got there first: it is never pushed after the results.
        statuses = [(f["status"], n) for n, f in enumerate(got) if f["type"] == "status"]
        assert all(status == "ended" and n < kinds.index("results") for status, n in statuses), (name, kinds)
        results = got[kinds.index("results")]["results"]
        assert Decimal(results["final_price"]) == expected.final_price
        assert [w["user_id"] for w in results["winners"]] == [b.bidder_id for b in expected.ranking[:3]]
