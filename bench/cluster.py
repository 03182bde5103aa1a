"""The scale-out figures of docs/PERFORMANCE.md ("Beyond one machine"): `make bench-cluster` (or
`.venv/bin/python bench/cluster.py [--only ceiling,shards,persist]`).

Starts its own Redis (deploy/redis.conf: AOF everysec) and its own Redis Cluster of 3 masters (the
same config, cluster-enabled) on spare loopback ports, and measures:

- ceiling: one session's bid script (auctions/lua/place_bid.lua) under redis-benchmark on one
  Redis, unpipelined (-c 50) and pipelined (-P 16): what one session, one shard, one core takes.
  Every call is a first bid of a new random bidder (redis-benchmark's __rand_int__), so every call
  is accepted and the board grows, as in a rush.
- shards: the same over many sessions at once (one redis-benchmark per session, pipelined), the
  sessions all on one Redis, then spread over the cluster's 3 masters.
- persist: 200 open sessions with 250 bids each in their streams (placed through the real script),
  drained into PostgreSQL by 1 worker, then by 2 workers at once (`recovery.persist_tick` in
  separate processes, sharing the sessions through their drain leases), the engine on the cluster.

Everything runs on this machine, load generators included: on a 2-core box the figures say what the
code allows here, not what N machines give (PERFORMANCE.md works that out). Every process it starts
is stopped at the end; its databases are its own (PostgreSQL `flashbid_bench_cluster`).
"""

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ports import spare_ports  # noqa: E402  (bench/ports.py)
from run import database_migrated  # noqa: E402  (bench/run.py)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(Path(sys.executable))
BENCH_DB = "flashbid_bench_cluster"
PREFIX = "fb"


class Stores:
    """A Redis and a 3-master Redis Cluster of this run, in a temporary directory."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="flashbid-bench-cluster-"))
        self.plain_port = spare_ports(1, bus=False)[0]
        self.node_ports = spare_ports(3, bus=True)
        self.procs: list[subprocess.Popen] = []

    def _server(self, port: int, *extra: str) -> None:
        directory = self.tmp / str(port)
        directory.mkdir()
        with open(directory / "redis.log", "wb") as log:
            self.procs.append(subprocess.Popen(
                ["redis-server", str(ROOT / "deploy" / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
                 "--dir", str(directory), "--daemonize", "no", "--logfile", "", *extra],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() \
                != "PONG":
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                raise RuntimeError(f"redis on {port} did not start:\n{(directory / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def start(self) -> None:
        self._server(self.plain_port)
        for port in self.node_ports:
            self._server(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        subprocess.run(["sh", str(ROOT / "deploy" / "redis-cluster.sh"), "create",
                        *(f"127.0.0.1:{port}" for port in self.node_ports)], check=True, capture_output=True)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _django(stores: Stores) -> None:
    """This process as a FlashBid process: its own database, the engine on the cluster, the plain
    Redis for the rest."""
    plain = f"redis://127.0.0.1:{stores.plain_port}/0"
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "flashbid.settings", "DEBUG": "true", "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "REDIS_CLUSTER": "true", "REDIS_URL": f"redis://127.0.0.1:{stores.node_ports[0]}/0",
        "CELERY_BROKER_URL": plain, "CHANNEL_LAYER_URL": plain, "CACHE_URL": plain, "REDIS_KEY_PREFIX": PREFIX,
    })
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- ceiling and shards: the bid script under redis-benchmark -------------------------------------

def _keyslot_node(client, session_id: str) -> int:
    return client.get_node_from_key(f"{PREFIX}:{{{session_id}}}:params").port


def sessions_load(port: int, session_ids: list[str]) -> str:
    """A whole live state for each session on the Redis at `port` (params and meta with one epoch,
    open for an hour, K = 10, alpha 1, beta 10, gamma 1), the bid script loaded; returns its sha."""
    import redis

    from auctions.live import SOURCES, params_fields, session_keys
    from auctions.models import BiddingSession

    client = redis.Redis(port=port, decode_responses=True)
    start = dt.datetime.fromtimestamp(time.time() - 60, dt.UTC)
    for session_id in session_ids:
        session = BiddingSession(pk=uuid.UUID(session_id), upset_price=Decimal("1.00"), inventory=10, alpha=1.0,
                                 beta=10.0,
                                 gamma=1.0, start_time=start, end_time=start + dt.timedelta(hours=1))
        keys = session_keys(session_id)
        client.hset(keys.params, mapping={**params_fields(session), "epoch": "bench"})
        client.hset(keys.meta, mapping={"seq": 0, "ver": 0, "hi": 0, "epoch": "bench"})
    sha = client.script_load(SOURCES["place_bid"])
    client.close()
    return sha


def benchmark_command(sha: str, session_id: str) -> list[str]:
    """EVALSHA of place_bid for a new random bidder each call (the script's KEYS and ARGV)."""
    k = f"{PREFIX}:{{{session_id}}}:"
    return ["EVALSHA", sha, "8", k + "params", k + "rank", k + "bids", k + "stream", k + "meta", k + "names",
            k + "rl:__rand_int__", k + "idem:-", "u__rand_int__", "bench", "50.00", "5000", "1.0", "1000000000",
            "600", "0"]


def redis_benchmark(port: int, command: list[str], *, requests: int, clients: int, pipeline: int) -> subprocess.Popen:
    return subprocess.Popen(["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", str(clients),
                             "-P", str(pipeline), "-r", "1000000000", "--csv", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def accepted(port: int, session_ids: list[str]) -> int:
    """Bids the script accepted on that Redis (each accepted bid takes the next seq)."""
    import redis

    client = redis.Redis(port=port, decode_responses=True)
    total = sum(int(client.hget(f"{PREFIX}:{{{sid}}}:meta", "seq") or 0) for sid in session_ids)
    client.close()
    return total


def run_benchmarks(jobs: list[tuple[int, str, str]], *, requests: int, clients: int, pipeline: int) -> dict:
    """One redis-benchmark per (port, sha, session) at once; bids/s accepted over the wall time."""
    before = sum(accepted(port, [sid]) for port, _, sid in jobs)
    began = time.perf_counter()
    procs = [redis_benchmark(port, benchmark_command(sha, sid), requests=requests, clients=clients,
                             pipeline=pipeline) for port, sha, sid in jobs]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    seconds = time.perf_counter() - began
    done = sum(accepted(port, [sid]) for port, _, sid in jobs) - before
    reported = [float(m.group(1)) for out in outputs for m in [re.search(r'^"EVALSHA[^"]*","([\d.]+)"', out, re.M)]
                if m]
    return {"sessions": len(jobs), "requests": requests * len(jobs), "accepted": done, "seconds": round(seconds, 2),
            "accepted_per_s": round(done / seconds), "reported_rps_sum": round(sum(reported))}


def usec_per_bid(port: int) -> float:
    """Redis's own time per EVALSHA since its stats were reset (INFO commandstats): the script's
    cost inside Redis, whatever the load generator costs."""
    import redis

    client = redis.Redis(port=port)
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    client.config_resetstat()
    client.close()
    return round(float(stats.get("usec_per_call", 0.0)), 2)


def ceiling(stores: Stores, requests: int) -> dict:
    session_id = str(uuid.uuid4())
    sha = sessions_load(stores.plain_port, [session_id])
    job = [(stores.plain_port, sha, session_id)]
    usec_per_bid(stores.plain_port)  # reset
    out = {"unpipelined (-c 50)": run_benchmarks(job, requests=requests, clients=50, pipeline=1)}
    out["unpipelined (-c 50)"]["usec_in_redis"] = usec_per_bid(stores.plain_port)
    out["pipelined (-c 50 -P 16)"] = run_benchmarks(job, requests=requests * 4, clients=50, pipeline=16)
    out["pipelined (-c 50 -P 16)"]["usec_in_redis"] = usec_per_bid(stores.plain_port)
    return out


def shards(stores: Stores, sessions: int, requests: int) -> dict:
    import redis

    cluster = redis.RedisCluster(host="127.0.0.1", port=stores.node_ports[0], decode_responses=True)
    # Sessions spread evenly over the masters (ids drawn until each master has its share).
    by_node: dict[int, list[str]] = {port: [] for port in stores.node_ports}
    while any(len(ids) < sessions // 3 for ids in by_node.values()):
        session_id = str(uuid.uuid4())
        port = _keyslot_node(cluster, session_id)
        if len(by_node[port]) < sessions // 3:
            by_node[port].append(session_id)
    cluster.close()
    spread = [(port, sid) for port, ids in by_node.items() for sid in ids]
    one = [str(uuid.uuid4()) for _ in spread]
    sha = sessions_load(stores.plain_port, one)
    on_one = [(stores.plain_port, sha, sid) for sid in one]
    on_three = []
    for port, ids in by_node.items():
        node_sha = sessions_load(port, ids)
        on_three += [(port, node_sha, sid) for sid in ids]
    per_session = requests // len(spread)
    return {"1 shard": run_benchmarks(on_one, requests=per_session, clients=4, pipeline=16),
            "3 shards": run_benchmarks(on_three, requests=per_session, clients=4, pipeline=16)}


# --- persist: 1 worker vs 2 over 200 sessions -------------------------------------------------------

_WORKER = r"""
import json, sys, time
start_at = float(sys.argv[1])
import django; django.setup()
from auctions import recovery
while time.time() < start_at: time.sleep(0.001)
began = time.time()
report = recovery.persist_tick()
print("PERSIST " + json.dumps({"events": report["events"], "drained": len(report["drained"]),
      "busy": len(report["busy"]), "began": began, "ended": time.time()}))
"""


def persist(stores: Stores, sessions: int, bidders: int, workers_list: list[int]) -> dict:
    from auctions.models import BiddingSession, BidEvent, Product
    from bench.prepare import bids_fill
    from bench.simulation import bots_prepare

    bots = bots_prepare(bidders, prefix="bench-cluster", tokens=False)
    results = {}
    for workers in workers_list:
        BiddingSession.objects.exclude(status="settled").update(  # earlier runs' sessions: done
            status="settled", settled_at=dt.datetime.now(dt.UTC))
        product = Product.objects.create(name="cluster bench")
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
        ids = [str(BiddingSession.objects.create(product=product, upset_price=Decimal("1.00"), inventory=10,
                                                 alpha=1.0, beta=10.0, gamma=1.0, start_time=start,
                                                 end_time=start + dt.timedelta(hours=1)).pk)
               for _ in range(sessions)]
        placed = sum(bids_fill(sid, [(b.user_id, b.username) for b in bots]) for sid in ids)
        events_before = BidEvent.objects.count()
        start_at = time.time() + 3  # every process started and set up by then
        procs = [subprocess.Popen([PYTHON, "-c", _WORKER, str(start_at)], cwd=ROOT, env=os.environ.copy(),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(workers)]
        reports = []
        for proc in procs:
            out = proc.communicate(timeout=600)[0]
            line = next((x for x in out.splitlines() if x.startswith("PERSIST ")), None)
            if line is None:
                raise RuntimeError(f"a persist worker failed:\n{out[-3000:]}")
            reports.append(json.loads(line.split(" ", 1)[1]))
        seconds = max(r["ended"] for r in reports) - min(r["began"] for r in reports)
        written = BidEvent.objects.count() - events_before
        assert written == placed, f"{written} of {placed} bids written"
        results[f"{workers} worker(s)"] = {"sessions": sessions, "bids": placed, "seconds": round(seconds, 2),
                                           "bids_per_s": round(placed / seconds),
                                           "per_worker": [(r["drained"], r["events"]) for r in reports]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="ceiling,shards,persist")
    parser.add_argument("--requests", type=int, default=200_000, help="bids per ceiling run (x4 pipelined)")
    parser.add_argument("--sessions", type=int, default=12, help="sessions of the shard runs (a multiple of 3)")
    parser.add_argument("--shard-requests", type=int, default=1_200_000, help="bids per shard run, all sessions")
    parser.add_argument("--persist-sessions", type=int, default=200)
    parser.add_argument("--persist-bidders", type=int, default=250, help="bids per session of the persist runs")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    stores = Stores()
    out = {"machine": f"{os.cpu_count()} cores", "seed": secrets.token_hex(2)}
    try:
        stores.start()
        _django(stores)
        if "ceiling" in wanted:
            out["ceiling"] = ceiling(stores, args.requests)
            print(json.dumps({"ceiling": out["ceiling"]}, indent=1), flush=True)
        if "shards" in wanted:
            out["shards"] = shards(stores, args.sessions, args.shard_requests)
            print(json.dumps({"shards": out["shards"]}, indent=1), flush=True)
        if "persist" in wanted:
            database_migrated(BENCH_DB)
            out["persist"] = persist(stores, args.persist_sessions, args.persist_bidders, [1, 2])
            print(json.dumps({"persist": out["persist"]}, indent=1), flush=True)
    finally:
        stores.stop()
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
