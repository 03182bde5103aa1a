"""Prometheus metrics: defined once here, incremented where things happen.

With several processes on one host (daphne ×N, the Celery worker), set PROMETHEUS_MULTIPROC_DIR
to one empty directory for all of them (deploy/up.sh and deploy/scale-out.sh do): each process
writes its samples there and whichever web process answers /metrics reports the sum (counters,
histograms), the live sum (open sockets, pool usage) or one series per pid (memory). Without it,
/metrics reports the answering process only. Collectors registered with `scrape_collector_register`
(the persist lag, read from Redis) run at scrape time.
"""

import os
import sys
import time

from django.db import connections
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if MULTIPROCESS:
    import atexit

    from prometheus_client import multiprocess

    # A process that ends cleanly drops out of the live gauges (open sockets, pool usage).
    atexit.register(multiprocess.mark_process_dead, os.getpid())

BIDS = Counter("flashbid_bids_total", "Bid attempts by outcome (accepted or the error code).", ["outcome"])
BID_LATENCY = Histogram(
    "flashbid_bid_seconds",
    "Time to handle a bid inside the view (auth, validation, engine round trip).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
AUTH_CACHE = Counter("flashbid_auth_cache_hits_total", "User lookups answered, by cache layer.", ["layer"])

PERSIST_BATCH_ROWS = Histogram(
    "flashbid_persist_batch_events", "Stream entries written to PostgreSQL per persist batch.",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
)
PERSIST_BATCH_SECONDS = Histogram(
    "flashbid_persist_batch_seconds", "Time to write one persist batch (COPY, upserts, commit, ack).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# Alerts: each of these counts something that should never happen unless Redis lost data.
PERSIST_SEQ_CONFLICTS = Counter(
    "flashbid_persist_seq_conflicts_total",
    "Persisted bids whose seq was already taken by a different bid (Redis lost writes); kept under a new seq.")
PERSIST_SKIPPED = Counter("flashbid_persist_skipped_total", "Stream entries not written, by reason.", ["reason"])
LIVE_STATE_RESTORES = Counter("flashbid_live_state_restores_total",
                              "Live session states restored from PostgreSQL, by reason.", ["reason"])
SETTLEMENT_ALERTS = Counter("flashbid_settlement_alerts_total",
                            "Settlements that found a mismatch they could not resolve (see the session's alert).")
SETTLEMENTS = Counter("flashbid_settlements_total", "Settlement attempts by outcome.", ["outcome"])
SETTLE_SECONDS = Histogram(
    "flashbid_settlement_seconds", "Time to settle one session (drain, rankings, commit).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RESULT_MAILS = Counter("flashbid_result_mails_total",
                       "Winners' result mails by outcome (sent, refused: the mail server refused the address "
                       "for good, no_address: the winner has no e-mail address).", ["outcome"])
WEBSOCKETS_OPEN = Gauge("flashbid_websockets_open", "Open leaderboard WebSockets.", multiprocess_mode="livesum")
PUSHES = Counter("flashbid_board_pushes_total", "Messages published to a session's listeners, by type.", ["type"])
DB_POOL = Gauge("flashbid_db_pool_connections", "Django's psycopg pool in this process, by state.", ["state"],
                multiprocess_mode="livesum")
# Labelled by the program (daphne, uvicorn, celery, ...) and, in multiprocess mode, the pid. A process
# that never refreshes it (beat, Flower, a prefork worker's parent) reports no series rather than 0.
RSS = Gauge("flashbid_process_resident_memory_bytes", "Resident memory of each FlashBid process.", ["program"],
            multiprocess_mode="liveall")
_PROGRAM = os.path.basename(sys.argv[0]) or "python"

_REFRESH_EVERY = 5.0
_refreshed_at = 0.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_gauges_refresh(*, force: bool = False) -> None:
    """Memory and pool gauges of this process; cheap, and done at most every few seconds."""
    global _refreshed_at
    now = time.monotonic()
    if not force and now - _refreshed_at < _REFRESH_EVERY:
        return
    _refreshed_at = now
    try:
        with open("/proc/self/statm") as statm:
            RSS.labels(_PROGRAM).set(int(statm.read().split()[1]) * _PAGE)
    except OSError:  # not Linux
        pass
    # Only a pool that exists: `.pool` would open one in a process that never queries. Private
    # (`DatabaseWrapper._connection_pools`, checked against Django 6.1.3, the version pinned in
    # requirements.txt; tests/test_private_internals.py fails if it changes shape).
    # (connections["default"], not the `connection` proxy, whose type is the proxy's.)
    wrapper = connections["default"]
    pool = getattr(type(wrapper), "_connection_pools", {}).get(wrapper.alias)
    if pool is not None:
        stats = pool.get_stats()
        DB_POOL.labels("size").set(stats.get("pool_size", 0))
        DB_POOL.labels("idle").set(stats.get("pool_available", 0))
        DB_POOL.labels("waiting").set(stats.get("requests_waiting", 0))


# Collectors read at scrape time (the apps register theirs in AppConfig.ready, e.g. the persist lag).
_scrape_collectors: list = []


def scrape_collector_register(collector) -> None:
    """`collector` (an object with `collect()` yielding metric families) is read at every scrape."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


def render() -> bytes:
    """The exposition text for /metrics."""
    process_gauges_refresh(force=True)
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    scraped = CollectorRegistry(auto_describe=False)
    for collector in _scrape_collectors:
        scraped.register(collector)
    return generate_latest(registry) + generate_latest(scraped)
