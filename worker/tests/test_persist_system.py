"""The write-behind with real Celery processes: every accepted bid reaches PostgreSQL within two
persist ticks, survives kill -9 of the worker mid-batch and an unreachable PostgreSQL, and the task
fails cleanly when Redis is down."""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from auctions import live
from auctions.models import Bid, BidEvent
from auctions.persistence import PERSIST_GROUP
from core.redis import get_redis
from tests import bidding, processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

PERSIST_TICK = 1.0


def _plan(users, *, rebidders: int, lower_rebids: int = 0):
    """Each bidder bids once; the first `rebidders` bid again higher; the next `lower_rebids`
    bidders try again at a lower price (refused: not_higher)."""
    plan = []
    for n, user in enumerate(users):
        first = f"{20 + n % 500}.{n % 100:02d}"
        prices = [first]
        if n < rebidders:
            prices.append(f"{600 + n}.50")
        elif n < rebidders + lower_rebids:
            prices.append("10.00")
        plan.append((user, prices))
    return plan


def _stream_state(session_id) -> tuple[int, int]:
    """(entries in the stream, entries read but not acknowledged)."""
    client, stream = get_redis(), live.session_keys(session_id).stream
    groups = {g["name"]: g for g in client.xinfo_groups(stream)} if client.exists(stream) else {}
    return client.xlen(stream), groups[PERSIST_GROUP]["pending"] if PERSIST_GROUP in groups else 0


def test_2000_bids_reach_postgresql_within_two_ticks(started, make_session):
    env = {"PERSIST_INTERVAL_SECONDS": str(PERSIST_TICK)}
    worker = started(processes.celery_worker, **env)
    started(processes.celery_beat, **env)
    worker.wait_for_log("ready.")
    session = make_session(inventory=50, alpha=1.0, beta=30.0, gamma=2.0)
    users = bidding.bidders(1_600)
    began = time.monotonic()
    accepted, rejected = bidding.place(session.pk, _plan(users, rebidders=400, lower_rebids=50))
    bidding_seconds = time.monotonic() - began
    assert len(accepted) == 2_000 and rejected == ["not_higher"] * 50

    done = time.monotonic()
    processes.wait_until(lambda: not bidding.mismatch(session.pk, accepted), 2 * PERSIST_TICK + 3,
                         message="PostgreSQL equals Redis")
    print(f"\n2000 bids placed in {bidding_seconds:.2f} s; PostgreSQL equal to Redis "
          f"{time.monotonic() - done:.2f} s after the last bid (tick {PERSIST_TICK} s)")
    assert Bid.objects.filter(session=session).count() == 1_600
    assert _stream_state(session.pk) == (0, 0)  # acknowledged and trimmed
    assert "raised unexpected" not in worker.log()


def _frozen(group: int) -> None:
    """SIGSTOP to a process group, returning once every process of it has stopped."""
    os.killpg(group, signal.SIGSTOP)

    def running() -> list[str]:
        states = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()  # after "pid (comm)"
            except OSError:  # gone meanwhile
                continue
            if int(fields[2]) == group and fields[0] not in ("T", "t", "Z"):
                states.append(stat.parent.name)
        return states

    processes.wait_until(lambda: not running(), 5, interval=0.001, message="the worker stopped")


def test_kill_9_mid_batch_loses_nothing_and_duplicates_nothing(started, make_session):
    """A tick of 3 batches (5000 + 5000 + 2000 entries); the worker is killed while its second
    batch is read but not acknowledged. A new worker reclaims those entries (XAUTOCLAIM after
    PERSIST_RECLAIM_IDLE_MS) and reads the rest."""
    session = make_session(inventory=10)
    users = bidding.bidders(4_000)
    accepted, rejected = bidding.place(session.pk, [(u, [f"{20 + n % 300}.00", f"{400 + n}.00", f"{5000 + n}.00"])
                                                    for n, u in enumerate(users)], concurrency=128)
    total = len(accepted)
    assert total == 12_000 and not rejected

    from worker.tasks import persist_bids

    # Batches back to back (no pause after each): the kill below must land while a batch is pending,
    # and with the pauses nothing is pending for most of the time between two batches.
    worker = started(processes.celery_worker, name="doomed", PERSIST_YIELD_RATIO="0")
    worker.wait_for_log("ready.")
    persist_bids.delay()
    # Kill as soon as one batch is acknowledged (the stream shrank) and the next is pending. The
    # worker is frozen (SIGSTOP) before the state that decides is read: on a busy machine it could
    # otherwise finish the batch between that read and the kill.
    deadline = time.monotonic() + 30
    while True:
        length, pending = _stream_state(session.pk)
        if length < total and pending:
            _frozen(worker.proc.pid)
            length, pending = _stream_state(session.pk)
            if pending:
                worker.kill()
                break
            os.killpg(worker.proc.pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "the worker never got into a second batch"
        time.sleep(0.002)

    length, pending = _stream_state(session.pk)
    written = BidEvent.objects.filter(session=session).count()
    print(f"\nkilled with {written} events written, {pending} entries pending on the dead consumer, "
          f"{length} entries in the stream")
    assert pending > 0 and 0 < written < total

    env = {"PERSIST_INTERVAL_SECONDS": str(PERSIST_TICK), "PERSIST_RECLAIM_IDLE_MS": "1000"}
    killed_at = time.monotonic()
    started(processes.celery_worker, name="heir", **env)
    started(processes.celery_beat, **env)
    processes.wait_until(lambda: not bidding.mismatch(session.pk, accepted), 40, interval=0.5,
                         message="everything persisted after the kill")
    print(f"recovered {time.monotonic() - killed_at:.1f} s after the kill")
    assert _stream_state(session.pk) == (0, 0)


def test_postgresql_unreachable_bids_accepted_then_all_persisted(started, make_session):
    from worker.tasks import persist_bids

    session = make_session(inventory=5)
    users = bidding.bidders(300)
    closed = processes.free_port()
    worker = started(processes.celery_worker, name="nodb",
                     DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed}/nowhere", DATABASE_POOL_TIMEOUT="2")
    worker.wait_for_log("ready.")
    accepted, rejected = bidding.place(session.pk, _plan(users, rebidders=100))
    assert len(accepted) == 400 and not rejected
    persist_bids.delay()
    worker.wait_for_log("persist_bids failed (OperationalError", timeout=30)
    worker.wait_for_log("succeeded", timeout=10)  # the task returned: no crash, no retry storm
    assert worker.proc.poll() is None
    assert "raised unexpected" not in worker.log()
    assert _stream_state(session.pk) == (400, 0)
    assert not BidEvent.objects.filter(session=session).exists()

    # More bids while the worker still cannot reach PostgreSQL.
    more, _ = bidding.place(session.pk, [(u, [f"{2000 + n}.00"]) for n, u in enumerate(users[:50])])
    accepted += more
    worker.stop()

    persist_bids.delay()  # queued for the next worker
    started(processes.celery_worker, name="withdb")
    processes.wait_until(lambda: not bidding.mismatch(session.pk, accepted), 20, interval=0.3,
                         message="everything persisted once PostgreSQL is back")
    assert _stream_state(session.pk) == (0, 0)


def test_persist_bids_with_redis_down_fails_cleanly(started, make_session):
    """The broker is up, the engine's Redis is not: the task logs and returns; the worker lives on."""
    from worker.tasks import persist_bids

    make_session()  # an open session: its stream is to be drained from Redis
    worker = started(processes.celery_worker, name="noredis",
                     REDIS_URL=f"redis://127.0.0.1:{processes.free_port()}/15")
    worker.wait_for_log("ready.")
    persist_bids.delay()
    persist_bids.delay()
    processes.wait_until(lambda: worker.log().count("persist_bids failed (ConnectionError") == 2, 30,
                         message="two clean failures")
    processes.wait_until(lambda: worker.log().count("succeeded") == 2, 10, message="both tasks returned")
    assert "raised unexpected" not in worker.log()
    assert worker.proc.poll() is None


@pytest.mark.cluster(only=True)
def test_two_workers_share_200_open_sessions_nothing_lost_or_doubled(started, make_session):
    """Two workers and one beat (a tick every second, shares of 20 sessions): 200 open sessions
    with 10 bids each, placed while the workers run, the engine on a Redis Cluster (the sharing is
    the same on one Redis: auctions/tests/test_persistence.py). Both workers drain sessions;
    PostgreSQL ends equal to Redis and to the replies for every session; every entry is written
    once."""
    env = {"PERSIST_INTERVAL_SECONDS": str(PERSIST_TICK), "PERSIST_SESSIONS_PER_TASK": "20"}
    workers = [started(processes.celery_worker, name=f"w{n}", **env) for n in (1, 2)]
    started(processes.celery_beat, **env)
    sessions = [make_session(inventory=3) for _ in range(200)]
    users = bidding.bidders(5)
    for worker in workers:
        worker.wait_for_log("ready.")
    began = time.monotonic()
    placed = bidding.place_in_sessions({s.pk: [(u, [f"{20 + n}.00", f"{40 + n}.00"]) for n, u in enumerate(users)]
                                        for s in sessions})
    assert all(len(accepted) == 10 and not rejected for accepted, rejected in placed.values())

    def all_persisted() -> bool:
        return BidEvent.objects.count() == 2_000 and not any(
            bidding.mismatch(s.pk, placed[s.pk][0]) for s in sessions)

    processes.wait_until(all_persisted, 30, interval=0.5, message="every session persisted")
    print(f"\n200 sessions x 10 bids placed and persisted by two workers in {time.monotonic() - began:.1f} s")
    written = {}
    for worker in workers:
        lines = re.findall(r"persist_(?:bids|sessions): (\d+) session\(s\) drained here .*?; (\d+) events",
                           worker.log())
        written[worker.name] = (sum(int(s) for s, _ in lines), sum(int(e) for _, e in lines))
        assert "raised unexpected" not in worker.log()
    print(f"(sessions drained, events written) per worker: {written}")
    assert all(events > 0 for _, events in written.values()), written  # both workers drained sessions
    assert sum(events for _, events in written.values()) == 2_000  # each entry written once
    assert Bid.objects.count() == 1_000
    assert all(_stream_state(s.pk) == (0, 0) for s in sessions)
