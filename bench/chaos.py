"""FlashBid's chaos run: `make chaos` (or `.venv/bin/python bench/chaos.py [options]`).

Starts the real stack on loopback with a PostgreSQL cluster and a Redis (AOF on) of its own on
spare ports, so that it can stop and start them: deploy/Procfile's web line (uvicorn ×2, as `make
up` runs it), one Celery worker, beat. About 200
bidders bid rising prices over HTTP through one session (K = 10) and keep bidding a few seconds
past its end. At random moments of the open session it injects, each once: SIGKILL of the worker
(then a new one), SIGKILL of Redis (then a restart from its AOF), a FLUSHALL of Redis, PostgreSQL
stopped for ~10 s, and `manage.py rebuild_leaderboard` during bidding. It logs every answer the
clients got, waits for the settlement, reads PostgreSQL directly and checks the contract's
durability promises against its own log (bench/chaos_checks.py). Prints the faults and the
invariants; exits 0 only if every invariant held. ~3 minutes; stops by itself.

`--cluster` runs the engine on a Redis Cluster of 3 masters of its own (each deploy/redis.conf,
AOF on, cluster-enabled; joined by deploy/redis-cluster.sh), with a plain Redis for the broker,
the channel layer and the cache, as deploy/docker-compose.cluster.yml does. The Redis faults then
hit the engine's store: SIGKILL of the master holding the session (then a restart from its AOF
and nodes.conf), FLUSHALL on every master.

Every process and temporary directory it starts is removed at the end, also on Ctrl-C or failure
(--keep keeps the directory). The last run's process logs, client log and report are copied to
var/chaos/ for reading afterwards.

The project is never imported: the stack is driven over HTTP, through `manage.py` commands and
with redis-py and psycopg directly, so that it checks the system from the outside.
"""

import argparse
import asyncio
import contextlib
import glob
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos_checks  # noqa: E402  (bench/chaos_checks.py; not part of the project)
from ports import spare_ports  # noqa: E402  (bench/ports.py)
from run import procfile_web_line  # noqa: E402  (bench/run.py)

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "python").exists() else Path(sys.executable).parent
PYTHON = str(BIN / "python")
ARTIFACTS = ROOT / "var" / "chaos"
DB_NAME = "flashbid_chaos"
KEY_PREFIX = "fb"  # REDIS_KEY_PREFIX: session keys are fb:{<session id>}:<name>

FAULT_KINDS = ["worker_kill", "redis_restart", "redis_flush", "postgres_stop", "rebuild_leaderboard"]
# Seconds of the session a fault may take (where it is placed in its slot).
FAULT_BUDGET = {"worker_kill": 4, "redis_restart": 4, "redis_flush": 10, "postgres_stop": 14,
                "rebuild_leaderboard": 4}


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cluster_ports(count: int) -> list[int]:
    """`count` free ports whose cluster bus ports (+10000) are free too, from a random start."""
    return spare_ports(count)


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    if not found:
        raise SystemExit("chaos: no PostgreSQL server under /usr/lib/postgresql/*/bin (apt install postgresql)")
    return Path(found[-1]).parent


# --- the stack ----------------------------------------------------------------------------------

class Proc:
    """A child process in its own session (so a kill reaches its children, e.g. a prefork pool)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 10) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._log.close()

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class Stack:
    """PostgreSQL, Redis, the web processes, worker and beat of this run, in one temporary directory."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="flashbid-chaos-"))
        self.tmp.chmod(0o755)  # the postgres user must reach its data directory below
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.pg_dir = self.tmp / "pg"
        self.pg_dir.mkdir()
        self.pg_data, self.pg_sock = self.pg_dir / "data", self.pg_dir / "sock"
        self.pg_sock.mkdir()
        shutil.chown(self.pg_dir, "postgres", "postgres")
        shutil.chown(self.pg_sock, "postgres", "postgres")
        self.redis_dir = self.tmp / "redis"
        self.redis_dir.mkdir()
        self.metrics_dir = self.tmp / "metrics"
        self.metrics_dir.mkdir()
        self.pg_bin = postgres_bin()
        # Three distinct ports (the kernel's port 0, asked three times, may give one twice).
        self.pg_port, self.redis_port, self.web_port = spare_ports(3, bus=False)
        # --cluster: the engine's masters (their cluster bus ports, +10000, must be free too).
        self.node_ports = cluster_ports(3) if args.cluster else []
        for port in self.node_ports:
            (self.tmp / f"redis-node-{port}").mkdir()
        self.procs: dict[str, Proc] = {}
        self.worker_generation = 0
        self.redis_generation = 0
        self.pg_started = False
        redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "flashbid.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/{DB_NAME}",
            # As deployed (docker-compose, scale-out): engine, cache, channel layer and broker share one Redis;
            # with --cluster the engine is on the cluster and the plain Redis keeps the other three.
            "REDIS_URL": f"redis://127.0.0.1:{self.node_ports[0]}/0" if args.cluster else redis_url,
            "REDIS_CLUSTER": "true" if args.cluster else "false",
            "CELERY_BROKER_URL": redis_url,
            "CHANNEL_LAYER_URL": redis_url,
            "CACHE_URL": redis_url,
            "REDIS_KEY_PREFIX": KEY_PREFIX,
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "plain",
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            # Shorter than the defaults (5 s, 10 s, 30 s) so that a ~100 s session sees many persist
            # ticks, a killed worker's entries are reclaimed within the run, and settlement follows the end.
            "PERSIST_INTERVAL_SECONDS": str(args.persist_interval),
            "SETTLE_INTERVAL_SECONDS": str(args.settle_interval),
            "PERSIST_RECLAIM_IDLE_MS": str(args.reclaim_idle_ms),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("PGHOST", None)
        self.env.pop("PGPORT", None)

    # PostgreSQL ------------------------------------------------------------------------------
    def _as_postgres(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)

    def pg_init(self) -> None:
        result = self._as_postgres(str(self.pg_bin / "initdb"), "-D", str(self.pg_data), "-A", "trust", "-U",
                                   "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
        if result.returncode:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        self.pg_start()
        with psycopg.connect(self.pg_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")

    def pg_dsn(self, dbname: str = DB_NAME) -> str:
        return f"host=127.0.0.1 port={self.pg_port} user=postgres dbname={dbname} connect_timeout=5"

    def pg_start(self) -> None:
        options = (f"-p {self.pg_port} -k {self.pg_sock} -c listen_addresses=127.0.0.1 -c max_connections=60 "
                   "-c shared_buffers=64MB")
        result = self._as_postgres(str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-l",
                                   str(self.pg_dir / "postgres.log"), "-o", options, "-w", "-t", "60", "start")
        if result.returncode:
            raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}")
        self.pg_started = True

    def pg_stop(self, mode: str = "fast") -> None:
        result = self._as_postgres(str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-m", mode, "-w",
                                   "-t", "60", "stop")
        if result.returncode and "Is server running?" not in result.stderr:
            raise RuntimeError(f"pg_ctl stop failed:\n{result.stdout}\n{result.stderr}")
        self.pg_started = False

    def _pg_postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.pg_data / "postmaster.pid").read_text().split("\n")[0])
        return None

    # Redis -----------------------------------------------------------------------------------
    def redis_start(self) -> None:
        self.redis_generation += 1
        self.procs["redis"] = Proc("redis", [
            "redis-server", str(ROOT / "deploy" / "redis.conf"), "--port", str(self.redis_port),
            "--bind", "127.0.0.1", "--dir", str(self.redis_dir), "--daemonize", "no", "--logfile", "",
        ], self.env, self.logs / "redis.log")
        client = self.plain_redis()
        deadline = time.monotonic() + 60  # loading a large AOF takes a moment
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            if not self.procs["redis"].alive() or time.monotonic() > deadline:
                raise RuntimeError(f"redis did not start:\n{self.procs['redis'].tail()}")
            time.sleep(0.05)

    def redis(self) -> redis.Redis | redis.RedisCluster:
        """A client of the engine's store: the Redis, or with --cluster the cluster."""
        if self.node_ports:
            return redis.RedisCluster(host="127.0.0.1", port=self.node_ports[0], decode_responses=True,
                                      socket_timeout=5, socket_connect_timeout=2)
        return self.plain_redis()

    def plain_redis(self) -> "redis.Redis":
        return redis.Redis(host="127.0.0.1", port=self.redis_port, db=0, decode_responses=True,
                           socket_timeout=5, socket_connect_timeout=2)

    def cluster_start(self) -> None:
        """--cluster: the masters (deploy/redis.conf, cluster-enabled), joined into a cluster."""
        for port in self.node_ports:
            self.node_start(port, cluster_ok=False)  # not joined yet
        result = subprocess.run(["sh", str(ROOT / "deploy" / "redis-cluster.sh"), "create",
                                 *(f"127.0.0.1:{port}" for port in self.node_ports)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"the Redis Cluster did not form:\n{result.stdout}\n{result.stderr}")

    def node_start(self, port: int, *, cluster_ok: bool = True) -> None:
        """Start (or restart, from its AOF and nodes.conf) the master on `port`; wait until it
        answers and, with `cluster_ok`, until it says the cluster is ok."""
        name = f"redis-node-{port}"
        self.procs[name] = Proc(name, [
            "redis-server", str(ROOT / "deploy" / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(self.tmp / name), "--daemonize", "no", "--logfile", "", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
        ], self.env, self.logs / f"{name}.log")
        node = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5,
                           socket_connect_timeout=2)
        deadline = time.monotonic() + 60
        while True:
            try:
                if node.ping() and (not cluster_ok or node.cluster("info")["cluster_state"] == "ok"):
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            if not self.procs[name].alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.procs[name].tail()}")
            time.sleep(0.05)

    def node_of(self, key: str) -> int:
        """--cluster: the port of the master holding `key`."""
        client = self.redis()
        try:
            return client.get_node_from_key(key).port
        finally:
            client.close()

    # FlashBid ---------------------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=timeout, start_new_session=True)
        if check and result.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed ({result.returncode}):\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def start_web(self) -> None:
        """deploy/Procfile's web line, as `make up` runs it, on this run's port."""
        self.procs["web"] = Proc("web", ["bash", "-c", "exec " + procfile_web_line()],
                                 {**self.env, "FLASHBID_WEB_PORT": str(self.web_port)}, self.logs / "web.log")
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if not self.procs["web"].alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web processes did not start:\n{self.procs['web'].tail()}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_worker(self) -> None:
        self.worker_generation += 1
        name = f"worker-{self.worker_generation}"
        proc = self.procs["worker"] = Proc(name, [
            str(BIN / "celery"), "-A", "flashbid", "worker", "--loglevel=INFO", "--concurrency=2",
            "--without-gossip", "--without-mingle", "-n", f"chaos-{self.worker_generation}@%h",
        ], self.env, self.logs / f"{name}.log")
        self._wait_log(proc, " ready.", 60)

    def start_beat(self) -> None:
        proc = self.procs["beat"] = Proc("beat", [str(BIN / "celery"), "-A", "flashbid", "beat", "--loglevel=INFO",
                                                  "-s", str(self.tmp / "celerybeat-schedule")],
                                         self.env, self.logs / "beat.log")
        self._wait_log(proc, "beat: Starting", 60)

    @staticmethod
    def _wait_log(proc: Proc, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in proc.tail(1_000_000):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name}: no {text!r} within {timeout}s:\n{proc.tail()}")
            time.sleep(0.2)

    # cleanup ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything this run started (web and Celery first, stores last), then remove the
        temporary directory unless --keep. Safe to call twice."""
        for name in ("web", "beat", "worker"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop()
        for name in ["redis", *(f"redis-node-{port}" for port in self.node_ports)]:
            proc = self.procs.pop(name, None)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.kill()
        if self.pg_data.exists():
            with contextlib.suppress(Exception):
                self.pg_stop("immediate")
            pid = self._pg_postmaster_pid()  # pg_ctl failed: end the postmaster this run started
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.save_artifacts()
        if self.args.keep:
            log(f"kept {self.tmp} (--keep)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def save_artifacts(self) -> None:
        """The last run's logs in var/chaos/ (ignored by git), whatever happens to the temp dir."""
        if ARTIFACTS.exists():
            shutil.rmtree(ARTIFACTS)
        ARTIFACTS.mkdir(parents=True)
        for path in list(self.logs.iterdir()) + [self.pg_dir / "postgres.log"]:
            if path.exists():
                shutil.copy(path, ARTIFACTS / path.name)


# --- bidders and the clients' log -----------------------------------------------------------------

def users_create(stack: Stack, count: int) -> list[dict]:
    """`count` bidders `chaos-0001`… made in one bulk insert (no password hashing per user), and an
    access token for each, through `manage.py shell` (this script imports nothing of the project).
    Weights 1.0-1.4, but chaos-0001's is --heavy-weight: ranked by score, it wins with a price
    below other winners', so the final price rule (the lowest winning price, not the K-th ranked
    winner's) is exercised in every run.

    Tokens are minted by the project's token function when it is where bench/prepare.py's bots find
    it; if the re-layering moved it, each bidder logs in over HTTP instead (slower: one password
    hash per bidder)."""
    code = r'''
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
User = get_user_model()
count, password = int(os.environ["CHAOS_BIDDERS"]), os.environ["CHAOS_PASSWORD"]
names = [f"chaos-{n:04d}" for n in range(1, count + 1)]
fields = {f.name for f in User._meta.get_fields()}
hashed = make_password(password)  # one hash, shared: minted tokens make it unused unless the fallback logs in
existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
users = []
for n, name in enumerate(names):
    if name in existing:
        continue
    user = User(username=name, email=f"{name}@chaos.flashbid.invalid", password=hashed)
    if "weight" in fields:  # chaos-0001 is heavy: it wins on weight with a price below other winners'
        user.weight = float(os.environ["CHAOS_HEAVY_WEIGHT"]) if n == 0 else 1.0 + (n % 5) / 10
    users.append(user)
User.objects.bulk_create(users, batch_size=1000)
try:
    from accounts.tokens import token_issue
except ImportError:
    token_issue = None
for user in User.objects.filter(username__in=names).order_by("username"):
    token = None
    if token_issue is not None:
        token = token_issue(user_id=str(user.pk), token_version=getattr(user, "token_version", 0),
                            ttl_seconds=3600)[0]
    print("CHAOS-USER " + json.dumps({"user_id": str(user.pk), "username": user.username, "token": token,
                                      "weight": getattr(user, "weight", 1.0)}))
'''
    password = secrets.token_urlsafe(18)
    env = {**stack.env, "CHAOS_BIDDERS": str(count), "CHAOS_PASSWORD": password,
           "CHAOS_HEAVY_WEIGHT": str(stack.args.heavy_weight)}
    result = subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=180, start_new_session=True)
    if result.returncode:
        raise RuntimeError(f"creating bidders failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    users = [json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("CHAOS-USER ")]
    if len(users) != count:
        raise RuntimeError(f"expected {count} bidders, got {len(users)}:\n{result.stdout[-2000:]}")
    if any(u["token"] is None for u in users):
        log("token function not found where expected: logging the bidders in over HTTP")
        users = asyncio.run(_login_all(stack.url, users, password))
    return users


async def _login_all(url: str, users: list[dict], password: str) -> list[dict]:
    semaphore = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def login(user: dict) -> dict:
            async with semaphore:
                response = await client.post("/api/auth/login", json={"username": user["username"],
                                                                       "password": password})
                response.raise_for_status()
                return {**user, "token": response.json()["access_token"]}
        return list(await asyncio.gather(*(login(u) for u in users)))


class Clients:
    """The bidders' shared state: the log of every answer, the pause gate, requests in flight."""

    def __init__(self):
        self.records: list[dict] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0

    async def request(self, client: httpx.AsyncClient, method: str, path: str, *, endpoint: str,
                      bidder: dict | None = None, price: str | None = None, kind: str = "", **kwargs) -> dict:
        record = {"endpoint": endpoint, "kind": kind, "bidder": bidder and bidder["username"],
                  "user_id": bidder and bidder["user_id"], "price": price, "status": None, "body": None,
                  "retry_after": None, "error": None, "t_sent": time.time(), "t_recv": None}
        self.in_flight += 1
        try:
            response = await client.request(method, path, **kwargs)
            record["status"] = response.status_code
            record["retry_after"] = response.headers.get("Retry-After")
            try:
                record["body"] = response.json()
            except ValueError:
                record["body"] = response.text[:500]
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.in_flight -= 1
            record["t_recv"] = time.time()
            self.records.append(record)
        return record


def _retry_after(record: dict, default: float = 1.0) -> float:
    with contextlib.suppress(TypeError, ValueError):
        return max(0.2, min(10.0, float(record["retry_after"])))
    return default


async def bidder_run(clients: Clients, client: httpx.AsyncClient, bidder: dict, *, session_id: str,
                     upset_cents: int, start_at: float, stop_at: float, rng: random.Random, interval: float) -> None:
    """One bidder: rising prices at random, one request in flight, a pause between bids (mean
    `interval` s, well under BID_RATE_LIMIT_PER_SECOND). Now and then a probe at or below their own
    price, which must be refused (409 not_higher). A 503 is retried at the same price after its
    Retry-After; an unanswered bid may have been accepted, so the next price goes above it."""
    path = f"/api/sessions/{session_id}/bids"
    headers = {"Authorization": f"Bearer {bidder['token']}"}
    best = 0  # cents: this bidder's highest price that was (or may have been) accepted
    await asyncio.sleep(max(0.0, start_at - time.time()) + rng.uniform(0, interval))
    while time.time() < stop_at:
        if best and rng.random() < 0.05:
            cents, kind = rng.randint(upset_cents, best), "probe"
        else:
            cents, kind = (best or upset_cents + rng.randint(0, 2_000)) + rng.randint(1, 1_500), "bid"
        price = f"{cents // 100}.{cents % 100:02d}"
        for attempt in range(30):
            await clients.gate.wait()
            record = await clients.request(client, "POST", path, endpoint="bid", bidder=bidder, price=price,
                                           kind=kind if not attempt else "retry", json={"price": price},
                                           headers=headers)
            status = record["status"]
            if status is None or (status >= 500 and status != 503):
                best = max(best, cents)  # maybe accepted
            if status == 201:
                best = max(best, cents)
            elif status == 409 and isinstance(record["body"], dict) and record["body"].get("code") == "not_higher":
                if kind != "probe":
                    best = max(best, cents)  # the server holds at least this much for us
            if status == 503 and time.time() < stop_at:
                await asyncio.sleep(_retry_after(record) + rng.uniform(0, 0.3))
                continue  # the same price again
            if status == 429 or status is None:
                await asyncio.sleep(_retry_after(record))
            break
        await asyncio.sleep(rng.expovariate(1 / interval))


# --- faults -------------------------------------------------------------------------------------

class Faults:
    def __init__(self, stack: Stack, clients: Clients, session_id: str, start_at: float, args):
        self.stack, self.clients, self.session_id, self.start_at, self.args = stack, clients, session_id, start_at, args
        self.done: list[dict] = []

    def _record(self, kind: str, began: float, injected: bool, detail: str) -> None:
        entry = {"kind": kind, "at": round(began - self.start_at, 1), "seconds": round(time.time() - began, 1),
                 "injected": injected, "detail": detail}
        self.done.append(entry)
        log(f"fault {kind} at +{entry['at']} s ({entry['seconds']} s): {detail}")

    async def run(self, schedule: list[tuple[float, str]], end_at: float) -> None:
        for at, kind in schedule:
            await asyncio.sleep(max(0.0, at - time.time()))
            began = time.time()
            if began > end_at - 3:
                self._record(kind, began, False, "not injected: the session was about to end")
                continue
            try:
                injected, detail = await getattr(self, kind)()
            except Exception as exc:  # a fault that could not be injected is reported, the run goes on
                injected, detail = False, f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            self._record(kind, began, injected, detail)

    async def worker_kill(self) -> tuple[bool, str]:
        old = self.stack.procs["worker"]
        old.kill()  # SIGKILL to its process group: the main process and its pool children
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.stack.start_worker)
        return True, f"SIGKILL worker pid {old.pid} (and its pool); worker-{self.stack.worker_generation} ready"

    async def redis_restart(self) -> tuple[bool, str]:
        if self.stack.node_ports:  # the master holding the session
            port = await asyncio.to_thread(self.stack.node_of, f"{KEY_PREFIX}:{{{self.session_id}}}:rank")
            old = self.stack.procs[f"redis-node-{port}"]
            old.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.stack.node_start, port)
            keys = await asyncio.to_thread(lambda: redis.Redis(host="127.0.0.1", port=port).dbsize())
            return True, (f"SIGKILL the session's master :{port} (pid {old.pid}), restarted from its AOF and "
                          f"nodes.conf ({keys} keys back), cluster ok")
        old = self.stack.procs["redis"]
        old.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.stack.redis_start)
        keys = await asyncio.to_thread(lambda: self.stack.plain_redis().dbsize())
        return True, f"SIGKILL redis pid {old.pid}, restarted from its AOF ({keys} keys back)"

    async def redis_flush(self) -> tuple[bool, str]:
        # A flush loses whatever Redis held that PostgreSQL did not have yet. The contract accepts
        # losing only the last second of a *machine* crash, so flushing with bids still in the stream
        # would make losses the contract allows indistinguishable from real ones. So: pause the
        # bidders, wait for every request in flight to be answered, wait until the session's stream
        # is empty with nothing pending (XLEN 0, XPENDING 0: persist_bids has written every accepted
        # bid to PostgreSQL and deleted it), then FLUSHALL, then resume. Every 201 before the flush is
        # then in PostgreSQL, and the system must restore the live state from there. (An engine that
        # keeps persisted entries in the stream would never show XLEN 0; the wait then also ends when
        # PostgreSQL's bid log holds every 201 answered so far, the condition that matters.)
        stream = f"{KEY_PREFIX}:{{{self.session_id}}}:stream"
        paused = time.time()
        self.clients.gate.clear()
        try:
            while self.clients.in_flight:
                await asyncio.sleep(0.02)
            client = self.stack.redis()
            # XLEN of a missing key is 0 too: the stream must exist (bids were accepted before),
            # or the key layout changed and the wait below would prove nothing.
            if not await asyncio.to_thread(client.exists, stream):
                return False, f"not injected: no stream {stream} in Redis (key names changed?)"
            at_pause, pending_at_pause = await asyncio.to_thread(_stream_state, client, stream)
            deadline = time.time() + self.args.flush_wait
            length = pending = -1
            how = "stream empty, none pending"
            checked = 0.0
            while time.time() < deadline:
                length, pending = await asyncio.to_thread(_stream_state, client, stream)
                if length == 0 and pending == 0:
                    break
                if time.time() - checked > 1.0:
                    checked = time.time()
                    if await asyncio.to_thread(_all_201s_logged, self.stack, self.session_id, self.clients.records):
                        how = f"stream {length} entries ({pending} pending), but every 201 in the bid log"
                        break
                await asyncio.sleep(0.1)
            else:
                return False, (f"not injected: the stream still held {length} entries ({pending} pending) after "
                               f"{self.args.flush_wait} s")
            caught_up = time.time() - paused
            if self.stack.node_ports:  # every master of the cluster
                keys = await asyncio.to_thread(client.dbsize, target_nodes=redis.RedisCluster.PRIMARIES)
                await asyncio.to_thread(client.flushall, target_nodes=redis.RedisCluster.PRIMARIES)
            else:
                keys = await asyncio.to_thread(client.dbsize)
                await asyncio.to_thread(client.flushall)
        finally:
            self.clients.gate.set()
        return True, (f"bidders paused; stream {at_pause} entries ({pending_at_pause} pending) -> {how} after "
                      f"{caught_up:.1f} s (PostgreSQL had every accepted bid); FLUSHALL ({keys} keys); "
                      f"bidders resumed after {time.time() - paused:.1f} s")

    async def postgres_stop(self) -> tuple[bool, str]:
        began = time.time()
        await asyncio.to_thread(self.stack.pg_stop, "fast")
        stopped = time.time() - began
        await asyncio.sleep(self.args.pg_down)
        await asyncio.to_thread(self.stack.pg_start)
        return True, f"pg_ctl stop -m fast ({stopped:.1f} s), down {self.args.pg_down:.0f} s, started again"

    async def rebuild_leaderboard(self) -> tuple[bool, str]:
        result = await asyncio.to_thread(self.stack.manage, "rebuild_leaderboard", self.session_id, check=False)
        lines = (result.stdout.strip() or result.stderr.strip()).splitlines() or [""]
        # A command that failed rebuilt nothing: the fault was not injected (and the failure is shown).
        return result.returncode == 0, f"manage.py rebuild_leaderboard: exit {result.returncode}, {lines[-1][:200]!r}"


def _all_201s_logged(stack: Stack, session_id: str, records: list[dict]) -> bool:
    """Whether PostgreSQL's bid log holds every 201 answered so far (its seq, bidder and price)."""
    wanted = {(int(r["body"]["seq"]), r["user_id"], Decimal(r["price"])) for r in records
              if r["endpoint"] == "bid" and r["status"] == 201}
    try:
        with psycopg.connect(stack.pg_dsn()) as conn:
            logged = {(seq, str(user), price) for seq, user, price in conn.execute(
                "SELECT seq, bidder_id, price FROM auctions_bidevent WHERE session_id = %s", (session_id,))}
    except psycopg.Error:
        return False
    return wanted <= logged


def _stream_state(client: redis.Redis, stream: str) -> tuple[int, int]:
    length = client.xlen(stream)
    try:
        pending = sum(group["pending"] for group in client.xinfo_groups(stream))
    except redis.ResponseError:  # no such stream: nothing pending either
        pending = 0
    return length, pending


def fault_schedule(rng: random.Random, start_at: float, end_at: float) -> list[tuple[float, str]]:
    """Each fault once, in random order, at a random moment of its own slot of the open session
    (slots leave the first and last ~8 % alone, and each fault room to finish in its slot)."""
    kinds = FAULT_KINDS[:]
    rng.shuffle(kinds)
    length = end_at - start_at
    first, last = start_at + max(5.0, 0.08 * length), end_at - max(6.0, 0.08 * length)
    slot = (last - first) / len(kinds)
    return [(first + n * slot + rng.uniform(0, max(0.0, slot - FAULT_BUDGET[kind])), kind)
            for n, kind in enumerate(kinds)]


# --- the run ------------------------------------------------------------------------------------

async def bidding(stack: Stack, users: list[dict], session: dict, args, rng: random.Random) -> tuple[Clients, Faults]:
    clients = Clients()
    start_at = chaos_checks.parse_time(session["start_time"]).timestamp()
    end_at = chaos_checks.parse_time(session["end_time"]).timestamp()
    stop_at = end_at + args.tail
    upset_cents = int(Decimal(session["upset_price"]) * 100)
    faults = Faults(stack, clients, session["id"], start_at, args)
    schedule = fault_schedule(rng, start_at, end_at)
    log("fault schedule: " + ", ".join(f"{kind} at +{at - start_at:.0f} s" for at, kind in schedule))
    limits = httpx.Limits(max_connections=len(users) + 10, max_keepalive_connections=len(users) + 10)
    async with httpx.AsyncClient(base_url=stack.url, limits=limits, timeout=args.request_timeout) as client:
        tasks = [asyncio.create_task(bidder_run(clients, client, user, session_id=session["id"],
                                                upset_cents=upset_cents, start_at=start_at, stop_at=stop_at,
                                                rng=random.Random(rng.random()),
                                                interval=rng.uniform(0.6, 1.4) * args.interval))
                 for user in users]
        progress = asyncio.create_task(_progress(clients, start_at, stop_at))
        try:
            await faults.run(schedule, end_at)
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, progress]:
                task.cancel()
            await asyncio.gather(*tasks, progress, return_exceptions=True)
    return clients, faults


async def _progress(clients: Clients, start_at: float, stop_at: float) -> None:
    while time.time() < stop_at:
        await asyncio.sleep(15)
        statuses = Counter(r["status"] for r in clients.records if r["endpoint"] == "bid")
        log(f"+{time.time() - start_at:.0f} s: {sum(statuses.values())} bids sent; "
            + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=lambda kv: str(kv[0]))))


async def settlement_wait(stack: Stack, clients: Clients, session_id: str, deadline: float) -> bool:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        while time.time() < deadline:
            record = await clients.request(client, "GET", f"/api/sessions/{session_id}/results", endpoint="results")
            if record["status"] == 200:
                return True
            await asyncio.sleep(1.0)
    return False


def read_postgres(stack: Stack, session_id: str):
    with psycopg.connect(stack.pg_dsn()) as conn:
        row = conn.execute("SELECT start_time, end_time, inventory, final_price, status FROM auctions_biddingsession "
                           "WHERE id = %s", (session_id,)).fetchone()
        session = dict(zip(["start_time", "end_time", "inventory", "final_price", "status"], row, strict=True))
        events = [chaos_checks.Event(seq, str(user), price, score, at) for seq, user, price, score, at in conn.execute(
            "SELECT seq, bidder_id, price, score, accepted_at FROM auctions_bidevent WHERE session_id = %s "
            "ORDER BY seq", (session_id,))]
        ranking = [chaos_checks.Ranked(str(user), rank, price, score, seq, winner)
                   for user, rank, price, score, seq, winner in conn.execute(
                       "SELECT bidder_id, rank, price, score, seq, is_winner FROM auctions_ranking "
                       "WHERE session_id = %s ORDER BY rank", (session_id,))]
        bids = conn.execute("SELECT count(*) FROM auctions_bid WHERE session_id = %s", (session_id,)).fetchone()[0]
    return session, events, ranking, bids


def log_summary(logs: Path) -> list[str]:
    """Per process log: ERROR/WARNING counts and the most frequent error messages."""
    lines = []
    for path in sorted(logs.glob("*.log")) + [logs.parent / "pg" / "postgres.log"]:
        if not path.exists():
            continue
        text = path.read_text(errors="replace").splitlines()
        errors = [line for line in text if re.search(r"\b(ERROR|CRITICAL|FATAL|PANIC)\b", line)]
        warnings = [line for line in text if re.search(r"\bWARNING\b", line)]
        lines.append(f"  {path.name}: {len(errors)} error lines, {len(warnings)} warnings, "
                     f"{sum('Traceback' in line for line in text)} tracebacks")
        messages = Counter(re.sub(r"^\S+ \S+ |\[[^\]]*\]|\b[0-9a-f-]{36}\b|\d+", "#", line)[:140]
                           for line in errors + warnings)
        for message, count in messages.most_common(4):
            lines.append(f"      {count:>5} x {message.strip()}")
    return lines


def by_fault(faults: list[dict], start_at: float, moments: list[float]) -> str:
    """How many of `moments` (epoch seconds) fall after each fault (the last one injected before)."""
    marks = sorted((f["at"], f["kind"]) for f in faults if f["injected"])
    counts: Counter = Counter()
    for moment in moments:
        label = "before any fault"
        for at, kind in marks:
            if at <= moment - start_at:
                label = f"after {kind} (+{at:.0f} s)"
        counts[label] += 1
    return ", ".join(f"{label}: {n}" for label, n in sorted(counts.items())) or "none"


def attribution(records: list[dict], events: list, faults: list[dict], start_at: float, timeout: float) -> list[str]:
    """Where the broken promises come from: each one counted under the last fault injected before it."""
    accepted, _ = chaos_checks.accepted_bids(records)
    lost = chaos_checks.unlogged(accepted, events)
    lower = chaos_checks.not_above(records)
    unanswered = [r for r in records if r["endpoint"] == "bid" and r["status"] is None]
    marks = sorted((f["at"], f["kind"]) for f in faults if f["injected"])
    setbacks = []
    for a, previous in chaos_checks.seq_setbacks(accepted):
        moment = a.accepted_at.timestamp() - start_at
        last = [f"{kind} at +{at:.1f} s" for at, kind in marks if at <= moment][-1:] or ["no fault"]
        setbacks.append(f"+{moment:.1f} s: {previous} -> {a.seq} (after {last[0]})")
    return ["seq counter went back (by the 201s, in acceptance order): " + ("; ".join(setbacks[:8]) or "never"),
            "by the last fault injected before them (timing, not necessarily cause: a seq counter set back "
            "by one fault collides until it passes PostgreSQL's highest seq):",
            "  201s not in the bid log as answered, by acceptance: "
            + by_fault(faults, start_at, [a.accepted_at.timestamp() for a in lost]),
            "  201s not above the bidder's earlier 201, by sending: "
            + by_fault(faults, start_at, [r["t_sent"] for r, _ in lower]),
            f"  bids with no answer (client timeout {timeout:.0f} s), by sending: "
            + by_fault(faults, start_at, [r["t_sent"] for r in unanswered])]


def redis_shape(stack: Stack) -> str:
    if not stack.node_ports:
        return ""
    return (f"; the engine on a Redis Cluster of {len(stack.node_ports)} masters (ports "
            f"{', '.join(map(str, stack.node_ports))}), the broker, channel layer and cache on a plain Redis")


def report(args, stack: Stack, session: dict | None, faults: list[dict], invariants: list, clients: Clients,
           extra: list[str], seconds: float) -> str:
    out = [f"FlashBid chaos run: seed {args.seed}, {args.bidders} bidders, session {args.duration:.0f} s, "
           f"K={args.inventory}; {platform.node()} ({os.cpu_count()} cores), {seconds:.0f} s in all",
           f"settings: PERSIST_INTERVAL_SECONDS={args.persist_interval}, SETTLE_INTERVAL_SECONDS="
           f"{args.settle_interval}, PERSIST_RECLAIM_IDLE_MS={args.reclaim_idle_ms}, worker --concurrency=2, "
           f"the Procfile's web line (uvicorn ×2); Redis deploy/redis.conf (AOF everysec){redis_shape(stack)}, "
           f"PostgreSQL {stack.pg_bin.parent.name}",
           f"session: upset 10.00, alpha 1, beta {args.beta}, gamma {args.gamma}; weights 1.0-1.4, chaos-0001 "
           f"{args.heavy_weight} (wins on weight below other winners' prices); a bid every ~{args.interval} s "
           f"per bidder, 5 % of them probes at or below the bidder's own price (must be 409 not_higher)",
           "flush: done only once the session's stream was empty with nothing pending (every accepted bid in "
           "PostgreSQL), bidders paused meanwhile: no loss it causes is one the contract allows", ""]
    statuses = Counter(str(r["status"]) for r in clients.records if r["endpoint"] == "bid")
    codes = Counter(r["body"].get("code") for r in clients.records
                    if r["endpoint"] == "bid" and isinstance(r["body"], dict) and r["status"] != 201)
    out.append(f"bids sent {sum(statuses.values())}: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    out.append("refusals by code: " + (", ".join(f"{c}: {n}" for c, n in codes.most_common()) or "none"))
    out += extra + ["", "FAULTS", f"  {'kind':<21} {'at (s)':>7} {'took (s)':>8}  detail"]
    for f in faults:
        out.append(f"  {f['kind']:<21} {f['at']:>+7.1f} {f['seconds']:>8.1f}  "
                   f"{'' if f['injected'] else 'NOT INJECTED: '}{f['detail']}")
    out += ["", "INVARIANTS", f"  {'invariant':<58} {'result':<9} counts"]
    for inv in invariants:
        out.append(f"  {inv.name:<58} {'held' if inv.held else 'VIOLATED':<9} {inv.counts}")
        out += [f"      - {d}" for d in inv.details]
    held = sum(inv.held for inv in invariants)
    out += ["", f"{held} of {len(invariants)} invariants held" + ("" if held == len(invariants) else
                                                                  f"; VIOLATED: {len(invariants) - held}"),
            "", "PROCESS LOGS (copied to var/chaos/)"] + log_summary(stack.logs)
    return "\n".join(out)


def run(args) -> int:
    began = time.time()
    rng = random.Random(args.seed)
    stack = Stack(args)
    clients, faults, invariants, session_row = Clients(), None, [], None
    try:
        log(f"temp dir {stack.tmp}; PostgreSQL :{stack.pg_port}, Redis :{stack.redis_port}, web :{stack.web_port}"
            + (f", Redis Cluster :{' :'.join(map(str, stack.node_ports))}" if stack.node_ports else ""))
        stack.pg_init()
        stack.redis_start()
        if stack.node_ports:
            stack.cluster_start()
        stack.manage("migrate", "--noinput", "-v0", timeout=300)
        log("migrated; starting the web processes, worker, beat")
        stack.start_web()
        users = users_create(stack, args.bidders)
        log(f"{len(users)} bidders with tokens")
        stack.start_worker()
        stack.start_beat()
        created = stack.manage("create_session", "--product", "Chaos run", "--inventory", str(args.inventory),
                               "--upset-price", "10.00", "--alpha", "1", "--beta", str(args.beta), "--gamma",
                               str(args.gamma), "--starts-in", "3", "--duration", str(args.duration))
        session_id = next(line for line in reversed(created.stdout.split()) if re.fullmatch(r"[0-9a-f-]{36}", line))
        session = httpx.get(f"{stack.url}/api/sessions/{session_id}", timeout=10).json()
        log(f"session {session_id}: {session['start_time']} .. {session['end_time']}, K={session['inventory']}")
        clients, faults = asyncio.run(bidding(stack, users, session, args, rng))
        log("bidding over; waiting for the settlement")
        end_at = chaos_checks.parse_time(session["end_time"]).timestamp()
        deadline = max(time.time(), end_at) + args.settle_timeout
        settled = asyncio.run(settlement_wait(stack, clients, session_id, deadline))
        if not stack.pg_started:
            stack.pg_start()
        session_row, events, ranking, bid_rows = read_postgres(stack, session_id)
        invariants = chaos_checks.check_all(records=clients.records, events=events, ranking=ranking,
                                            session=session_row, settled=settled, faults=faults.done,
                                            fault_kinds=FAULT_KINDS)
        extra = [f"PostgreSQL: {len(events)} bid log rows, {bid_rows} current bids, {len(ranking)} ranked, "
                 f"final_price {session_row['final_price']}, status {session_row['status']}"]
        extra += attribution(clients.records, events, faults.done, session_row["start_time"].timestamp(),
                             args.request_timeout)
        text = report(args, stack, session_row, faults.done, invariants, clients, extra, time.time() - began)
        print("\n" + text, flush=True)
        stack.logs.joinpath("report.txt").write_text(text + "\n")
        return 0 if all(inv.held for inv in invariants) else 1
    finally:
        with contextlib.suppress(Exception):
            with open(stack.logs / "client-log.jsonl", "w") as fh:
                for record in clients.records:
                    fh.write(json.dumps(record, default=str) + "\n")
        stack.close()
        log(f"cleaned up; logs, client log and report in {ARTIFACTS.relative_to(ROOT)}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bidders", type=int, default=200)
    parser.add_argument("--duration", type=float, default=100.0, help="session length in seconds (60..300)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (fault order and moments, prices)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs)")
    parser.add_argument("--inventory", type=int, default=10, help="K")
    parser.add_argument("--beta", type=float, default=100.0, help="session's beta (time bonus)")
    parser.add_argument("--gamma", type=float, default=100.0,
                        help="session's gamma: weights are 1.0-1.4, so up to 40.00 of score comes from weight and "
                        "the ranking by score differs from the order of prices (the final price rule matters)")
    parser.add_argument("--heavy-weight", type=float, default=5.0, help="chaos-0001's weight (the others 1.0-1.4)")
    parser.add_argument("--interval", type=float, default=1.5, help="mean seconds between one bidder's bids")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds the bidders go on after the end")
    parser.add_argument("--pg-down", type=float, default=10.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--flush-wait", type=float, default=40.0,
                        help="at most this long for the stream to drain before the flush")
    parser.add_argument("--persist-interval", type=float, default=2.0)
    parser.add_argument("--settle-interval", type=float, default=2.0)
    parser.add_argument("--reclaim-idle-ms", type=int, default=5000)
    parser.add_argument("--settle-timeout", type=float, default=60.0, help="seconds after the end to wait for results")
    parser.add_argument("--request-timeout", type=float, default=15.0)
    parser.add_argument("--cluster", action="store_true",
                        help="the engine on a Redis Cluster of 3 masters (the broker, channel layer and cache on a "
                        "plain Redis); the Redis faults hit the session's master / every master")
    parser.add_argument("--self-test", action="store_true", help="only check that every invariant check can fail")
    args = parser.parse_args()
    if args.self_test:
        problems = chaos_checks.selftest()
        print("\n".join(problems) or "self-test: every check holds on a clean record and fails on a broken one")
        sys.exit(1 if problems else 0)
    if not 60 <= args.duration <= 300:
        parser.error("--duration must be within 60..300 s")
    if not 1 <= args.bidders <= 2000:
        parser.error("--bidders must be within 1..2000")
    if os.geteuid() != 0:
        parser.error("run as root: PostgreSQL is started as the postgres user through runuser")
    if args.seed is None:
        args.seed = secrets.randbelow(1_000_000)

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # Also SIGINT: started in the background by a non-interactive shell, Python would inherit it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)
    try:
        code = run(args)
    except KeyboardInterrupt:
        log("interrupted; everything it started is stopped")
        code = 130
    except Exception as exc:
        log(f"the chaos run itself failed: {type(exc).__name__}: {exc}")
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
