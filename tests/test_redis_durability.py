"""Redis as deployed (deploy/redis.conf, AOF with appendfsync everysec): a Redis process killed
with SIGKILL right after answering bids comes back with every acknowledged bid, its ranking and its
persist stream, and bidding goes on with the same rules (not_higher); the connections the web
processes kept are opened again, not failed on."""

import asyncio
from pathlib import Path

import httpx
import pytest
import redis

from auctions import live
from core.redis import get_async_redis, get_redis
from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

CONF = Path(processes.ROOT, "deploy", "redis.conf")


def _redis_server(log_dir: Path, port: int, data_dir: Path) -> processes.Process:
    process = processes.Process("redis", ["redis-server", str(CONF), "--port", str(port), "--bind", "127.0.0.1",
                                          "--dir", str(data_dir), "--daemonize", "no"], {}, log_dir)
    processes.wait_for_port(port, process)
    client = redis.Redis(port=port)
    processes.wait_until(lambda: _loaded(client), 30, message="redis loaded its AOF")
    return process


def _loaded(client: redis.Redis) -> bool:
    try:
        return client.ping() and client.info("persistence")["loading"] == 0
    except redis.exceptions.BusyLoadingError:
        return False


def test_deploy_config_turns_on_aof_everysec(started, tmp_path):
    port = processes.free_port()
    started(_redis_server, port, tmp_path)
    client = redis.Redis(port=port, decode_responses=True)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_acknowledged_bids_survive_a_killed_redis(started, tmp_path, make_session, make_user, auth_header):
    port, web_port = processes.free_port(), processes.free_port()
    data_dir = tmp_path / "redis-data"
    data_dir.mkdir()
    redis_process = started(_redis_server, port, data_dir)
    redis_url = f"redis://127.0.0.1:{port}/0"
    started(processes.daphne, web_port, REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
    session = make_session(inventory=2, alpha=1.0)
    users = [make_user() for _ in range(5)]
    base = f"http://127.0.0.1:{web_port}/api/sessions/{session.pk}"

    with httpx.Client(timeout=10) as http:
        accepted = []
        for n, user in enumerate(users):
            response = http.post(f"{base}/bids", json={"price": f"{20 + n}.00"}, headers=auth_header(user))
            assert response.status_code == 201, response.text
            accepted.append(response.json())
        before = http.get(f"{base}/leaderboard").json()

        # No wait for an fsync: Redis writes the AOF before it replies, so a killed process keeps it.
        redis_process.kill()
        restarted = started(_redis_server, port, data_dir)
        assert restarted.proc.pid != redis_process.proc.pid

        client = redis.Redis(port=port, decode_responses=True)
        assert client.xlen(live.session_keys(session.pk).stream) == len(accepted)

        def board():
            try:
                response = http.get(f"{base}/leaderboard")
            except httpx.HTTPError:
                return None
            return response.json() if response.status_code == 200 else None

        after = processes.wait_until(board, 15, message="leaderboard served after the restart")
        assert after["entries"] == before["entries"] and after["version"] == before["version"]
        assert [e["user_id"] for e in after["entries"]] == [b["user_id"] for b in reversed(accepted)]

        lower = http.post(f"{base}/bids", json={"price": "19.00"}, headers=auth_header(users[-1]))
        assert lower.status_code == 409 and lower.json()["code"] == "not_higher", lower.text
        higher = http.post(f"{base}/bids", json={"price": "99.00"}, headers=auth_header(users[0]))
        assert higher.status_code == 201 and higher.json()["rank"] == 1
        assert higher.json()["seq"] == max(b["seq"] for b in accepted) + 1


def test_pooled_connections_closed_by_redis_are_opened_again_before_their_next_command(started, settings):
    # Redis restarted: every connection a process keeps in its pools is closed. Each must be found
    # closed when it is next taken (core.redis turns off redis-py's maintenance notifications, with
    # which its pools skip that check), not fail a bidder's request. A Redis of its own: the kill
    # reaches every client of the server.
    port = processes.free_port()
    started(processes.redis_server, port)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    plain = redis.Redis(port=port, decode_responses=True)
    sync_client = get_redis()
    sync_client.set("k", "v")

    async def three_at_once():
        client = get_async_redis()
        return await asyncio.gather(*(client.get("k") for _ in range(3)))

    async def scenario():
        try:
            assert await three_at_once() == ["v"] * 3  # three connections in the async pool
            assert plain.client_kill_filter(_type="normal", skipme=True) >= 4
            await asyncio.sleep(0.2)  # the closes reach the client's side
            return await three_at_once()
        finally:
            await get_async_redis().aclose(close_connection_pool=True)

    try:
        assert asyncio.run(scenario()) == ["v"] * 3
        assert sync_client.get("k") == "v"  # (the sync pool finds a closed socket either way)
    finally:
        sync_client.close()
        plain.close()
