"""A/B runs behind issue 18's choices, each alternating its variants on a private Redis (a
redis-server of its own on a free port: its command counts are this run's alone) and its own
database. What they print is meant to be compared within one run: besides throughput, each reports
what depends little on what else the machine is doing (CPU time per request of the server
processes, from /proc; Redis's own command counts and times).

    .venv/bin/python bench/ab.py servers     # web-server shapes: /healthz and bids, CPU per request
    .venv/bin/python bench/ab.py user-cache  # the change channel on and off: Redis commands per bid
    .venv/bin/python bench/ab.py persist     # persist batch sizes: drain rate, Redis's longest command
    .venv/bin/python bench/ab.py generator   # the open-loop generator on 1 and 2 processes: its CPU

Options: --rounds, --seconds, --shapes, --sizes (see --help). Loopback only, bounded in time.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run  # noqa: E402

AB_DB = "flashbid_bench_ab"
BIN = str(run.BIN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shapes(port: int, procfile_dir: Path) -> dict[str, list[str]]:
    """name -> command. honcho-*: the web line of a process file under honcho, as `make up` runs it
    (honcho relays each output line, so an access log costs CPU in honcho as well)."""
    daphne = [f"{BIN}/daphne", "-b", "127.0.0.1", "-p", str(port), "flashbid.asgi:application"]
    quiet = [daphne[0], "-v", "0", *daphne[1:]]
    uvicorn = [f"{BIN}/uvicorn", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--loop", "uvloop",
               "--http", "httptools", "--ws", "none", "--lifespan", "off", "flashbid.asgi:application"]
    one_write = [*uvicorn]
    one_write[one_write.index("httptools")] = "flashbid.server:HttpProtocol"
    for name, command in (("access-log", daphne), ("quiet", quiet)):
        (procfile_dir / f"Procfile.{name}").write_text(f"web: {' '.join(command)}\n")
    honcho = [f"{BIN}/honcho", "-d", str(run.ROOT), "start", "-f"]
    return {
        "honcho-daphne-access-log": [*honcho, str(procfile_dir / "Procfile.access-log")],
        "honcho-daphne-v0": [*honcho, str(procfile_dir / "Procfile.quiet")],
        "daphne-access-log": daphne,
        "daphne-v0": quiet,
        "uvicorn": uvicorn,
        "uvicorn-x2": [*uvicorn[:-1], "--workers", "2", uvicorn[-1]],
        # flashbid.server's protocol: a response's head and body in one write.
        "uvicorn-one-write": one_write,
        "uvicorn-one-write-x2": [*one_write[:-1], "--workers", "2", one_write[-1]],
    }


def cpu_seconds(servers: run.Servers) -> float:
    """User + system CPU time of every process of the shape (the server and all its descendants)."""
    tick = os.sysconf("SC_CLK_TCK")

    def tree(pid: int):
        yield pid
        for child in run._children(pid):
            yield from tree(child)

    total = 0.0
    for proc in servers.procs.values():
        for pid in tree(proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class PrivateRedis:
    def __init__(self):
        self.port = _free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _setup(redis_url: str) -> dict[str, str]:
    run.BENCH_DB = AB_DB
    run.VAR = run.ROOT / "var" / "bench-ab"
    env = run._environment(None)
    env.update(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
    os.environ.update(env)
    import django

    django.setup()
    run._prepare_database()
    return env


def _commands(client, *names: str) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names}


def servers_ab(args, env: dict[str, str]) -> list[str]:
    from bench import simulation
    from bench.bid_flood import session_create

    port = _free_port()
    shapes = _shapes(port, Path(tempfile.mkdtemp(prefix="flashbid-ab-")))
    chosen = args.shapes.split(",") if args.shapes else list(shapes)
    env = {**env, "LOG_LEVEL": args.log_level}
    bots = simulation.bots_prepare(10_000, prefix="bench")
    lines = []
    for round_ in range(args.rounds):
        for shape in chosen:
            servers = run.Servers(env, server="daphne", web_processes=1, base_port=port, scale_out=False)
            servers._start(f"ab-{shape}", shapes[shape])
            try:
                run._wait_http(f"http://127.0.0.1:{port}/healthz", 60)
                run.wrk(f"http://127.0.0.1:{port}/healthz", "get.lua", seconds=2)  # warm-up
                run.wrk_bids(port, session_create(), bots, seconds=3, price_base=100_000)
                began = cpu_seconds(servers)
                h = run.wrk(f"http://127.0.0.1:{port}/healthz", "get.lua", seconds=args.seconds)
                between = cpu_seconds(servers)
                b = run.wrk_bids(port, session_create(), bots, seconds=args.seconds, price_base=100_000)
                ended = cpu_seconds(servers)
            finally:
                servers.stop()
            healthz_cpu = (between - began) / h["requests"] * 1e6
            bid_cpu = (ended - between) / b["requests"] * 1e6
            lines.append(f"| {round_ + 1} | {shape} | {h['rps']:,.0f} | {healthz_cpu:,.0f} | "
                         f"{b['accepted_rps']:,.0f} | {bid_cpu:,.0f} | "
                         f"{b['p50_ms']:.0f} / {b['p99_ms']:.0f} | {os.getloadavg()[0]:.1f} |")
            print(lines[-1], flush=True)
    return ["| round | shape | /healthz req/s | µs CPU per /healthz | bids/s | µs CPU per bid | bid p50 / p99 ms "
            "| load |", "|---|---|---|---|---|---|---|---|", *lines]


def user_cache_ab(args, env: dict[str, str]) -> list[str]:
    from bench import simulation
    from bench.bid_flood import session_create
    from core.redis import get_redis

    port = _free_port()
    client = get_redis()
    bots = simulation.bots_prepare(10_000, prefix="bench")
    lines = []
    for round_ in range(args.rounds):
        for long_ttl in ("300", "0"):
            servers = run.Servers({**env, "AUTH_LOCAL_CACHE_LONG_TTL_SECONDS": long_ttl}, server="daphne",
                                  web_processes=1, base_port=port, scale_out=False)
            servers._start("ab-user-cache", [f"{BIN}/daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port),
                                             "flashbid.asgi:application"])
            try:
                run._wait_http(f"http://127.0.0.1:{port}/healthz", 60)
                # Warm-up: the subscriber subscribes, and every bidder bids once (their first read
                # is then behind: what differs is whether the next one, ~15 s later, reads again).
                warm = run.wrk_bids(port, session_create(), bots, seconds=3, price_base=100_000)
                rest = len(bots) / max(1.0, warm["rps"]) - 3 + 1
                if rest > 0:
                    run.wrk_bids(port, session_create(), bots, seconds=min(round(rest + 0.5), 60), price_base=100_000)
                session_id = session_create()
                client.config_resetstat()
                began = cpu_seconds(servers)
                b = run.wrk_bids(port, session_id, bots, seconds=args.seconds, price_base=100_000)
                ended = cpu_seconds(servers)
                calls = _commands(client, "evalsha", "hgetall")
            finally:
                servers.stop()
            n = b["requests"]
            channel = "on (300 s)" if long_ttl != "0" else "off (5 s TTL, as before)"
            lines.append(f"| {round_ + 1} | {channel} | {calls['evalsha'] / n:.3f} | {calls['hgetall'] / n:.3f} | "
                         f"{(ended - began) / n * 1e6:,.0f} | {b['accepted_rps']:,.0f} | {b['p50_ms']:.0f} / "
                         f"{b['p99_ms']:.0f} | {os.getloadavg()[0]:.1f} |")
            print(lines[-1], flush=True)
    return ["| round | change channel | EVALSHA per bid | HGETALL per bid | µs CPU per bid | bids/s | p50 / p99 ms "
            "| load |", "|---|---|---|---|---|---|---|---|", *lines]


def persist_ab(args, env: dict[str, str]) -> list[str]:
    from auctions import persistence
    from bench.bid_flood import session_create
    from bench.prepare import bids_fill
    from bench.simulation import bots_prepare
    from core.redis import get_redis

    client = get_redis()
    bidders = [(b.user_id, b.username) for b in bots_prepare(10_000, prefix="bench", tokens=False)]
    lines = []
    for round_ in range(args.rounds):
        for size in map(int, args.sizes.split(",")):
            persistence.BATCH_SIZE = size
            persistence.MAX_BATCHES_PER_TICK = 10**9
            session_id = session_create()
            placed = bids_fill(session_id, bidders, rounds=max(1, args.bids // len(bidders)))
            client.config_resetstat()
            client.config_set("slowlog-log-slower-than", 0)  # every command, with its time inside Redis
            client.config_set("slowlog-max-len", 1_000_000)
            client.slowlog_reset()
            began = time.perf_counter()
            written = 0
            # This session alone (bids_persist_all would also visit every open session of earlier runs).
            while events := persistence.session_drain(session_id=session_id).events:
                written += events
            seconds = time.perf_counter() - began
            longest: dict[str, int] = {}
            for entry in client.slowlog_get(1_000_000):
                command = entry["command"]
                name = (command.decode() if isinstance(command, bytes) else str(command)).split()[0].upper()
                longest[name] = max(longest.get(name, 0), entry["duration"])
            client.config_set("slowlog-log-slower-than", 10_000)
            lines.append(f"| {round_ + 1} | {size:,} | {written:,} of {placed:,} | {written / seconds:,.0f} | "
                         f"{longest.get('XREADGROUP', 0) / 1000:.1f} | {longest.get('XACK', 0) / 1000:.1f} | "
                         f"{longest.get('EVALSHA', 0) / 1000:.1f} | {os.getloadavg()[0]:.1f} |")
            print(lines[-1], flush=True)
    return ["| round | batch | written | bids/s persisted | longest XREADGROUP ms | longest XACK ms "
            "| longest EVALSHA (trim, seq floor) ms | load |", "|---|---|---|---|---|---|---|---|", *lines]


def generator_ab(args, env: dict[str, str]) -> list[str]:
    """bench/openloop.py against /healthz on uvicorn ×2 (cheap answers: the generator's own cost
    shows), each rate with one process and with two."""
    from bench import openloop

    port = _free_port()
    servers = run.Servers(env, server="uvicorn", web_processes=2, base_port=port, scale_out=False)
    servers._start("ab-generator", _shapes(port, Path(tempfile.mkdtemp(prefix="flashbid-ab-")))["uvicorn-x2"])
    lines = []
    try:
        run._wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        make = run.get_request_maker("/healthz")
        for round_ in range(args.rounds):
            for rate in map(float, args.rates.split(",")):
                for processes in (1, 2):
                    r = openloop.run_processes(host="127.0.0.1", port=port, rate=rate, duration=args.seconds,
                                               make_request=make, processes=processes)
                    n = max(1, len(r.latencies))
                    lines.append(f"| {round_ + 1} | {rate:,.0f} | {processes} | {len(r.latencies):,} | "
                                 f"{r.cpu_seconds / n * 1e6:,.0f} | {r.late / n:.1%} | {r.percentile(0.5):.1f} / "
                                 f"{r.percentile(0.99):.1f} | {os.getloadavg()[0]:.1f} |")
                    print(lines[-1], flush=True)
    finally:
        servers.stop()
    return [f"| round | offered req/s | processes | answered | generator µs CPU per request "
            f"| left > {openloop.LATE * 1000:g} ms late "
            f"| p50 / p99 ms | load |  (uvloop: {openloop.uvloop is not None})", "|---|---|---|---|---|---|---|---|",
            *lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["servers", "user-cache", "persist", "generator"])
    parser.add_argument("--rounds", type=int, default=2, help="each variant this many times, alternating")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each wrk run")
    parser.add_argument("--shapes", default="", help="servers: comma-separated, of "
                        "honcho-daphne-access-log,honcho-daphne-v0,daphne-access-log,daphne-v0,uvicorn,uvicorn-x2")
    parser.add_argument("--log-level", default="INFO", help="servers: LOG_LEVEL of the web processes (as users run)")
    parser.add_argument("--sizes", default="5000,2000,1000", help="persist: batch sizes")
    parser.add_argument("--bids", type=int, default=50_000, help="persist: bids queued per drain")
    parser.add_argument("--rates", default="1000,2500", help="generator: offered rates, req/s")
    args = parser.parse_args()
    redis = PrivateRedis()
    try:
        env = _setup(redis.url)
        table = {"servers": servers_ab, "user-cache": user_cache_ab, "persist": persist_ab,
                 "generator": generator_ab}[args.what](args, env)
    finally:
        redis.stop()
    print(f"\nbench/ab.py {' '.join(sys.argv[1:])} · {run.machine()}\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
