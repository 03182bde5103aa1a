"""deploy/Procfile's web line, the server `make up` runs (uvicorn workers sharing one port for the
pages, the API and the WebSockets), against the test database and Redis: it serves all three, and
a board pushed by one of its processes reaches sockets on the other. (A client that stops reading
delays no other socket: leaderboard/tests/test_consumers.py, with a send that waits as uvicorn's
does once a client's buffers are full. Here the kernel's send buffer, autotuned to ~4 MB on
loopback, would take minutes of pushes to fill.)"""

import asyncio
import json
import re

import httpx
import pytest
from websockets.asyncio.client import connect

from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

ORIGIN = "http://127.0.0.1"


def _ws_url(port: int, session) -> str:
    return f"ws://127.0.0.1:{port}/ws/sessions/{session.pk}/"


def _assert_clean_log(process: processes.Process) -> None:
    log = process.log()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


async def _metrics_of_both_processes(port: int) -> str:
    """/metrics once both processes have served a request (each then reports its memory under its
    pid): bursts of connections at once, which the processes race to accept, until both have."""
    for _ in range(20):
        async def one() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                assert (await http.get("/healthz")).status_code == 200
        await asyncio.gather(*(one() for _ in range(20)))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            metrics = (await http.get("/metrics")).text
        if len(re.findall(r"^flashbid_process_resident_memory_bytes", metrics, re.MULTILINE)) >= 2:
            break
    return metrics


def test_the_web_line_serves_pages_api_and_sockets_from_both_processes(started, tmp_path, make_session, make_user,
                                                                        auth_header):
    port = processes.free_port()
    metrics_dir = tmp_path / "prometheus"  # as deploy/up.sh sets it: /metrics sums every process
    metrics_dir.mkdir()
    web = started(processes.procfile_web, port, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    session = make_session(inventory=2)
    bidders = [make_user() for _ in range(6)]

    async def scenario():
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            # flashbid.server's protocol: a HEAD answer (a head with a length and no body) still goes out.
            head = await http.head("/")
            assert head.status_code == 200 and int(head.headers["content-length"]) > 0 and head.content == b""
            page = await http.get("/login/")
            assert page.status_code == 200 and "csrftoken" in page.headers.get("set-cookie", "")
            # Sockets opened at once: the processes race to accept them, so both get some.
            sockets = await asyncio.gather(*(connect(_ws_url(port, session), origin=ORIGIN, open_timeout=10)
                                             for _ in range(16)))
            try:
                for ws in sockets:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
                for n, bidder in enumerate(bidders):
                    reply = await http.post(f"/api/sessions/{session.pk}/bids", json={"price": f"{20 + n}.00"},
                                            headers=auth_header(bidder))
                    assert reply.status_code == 201, reply.text
                final = reply.json()["price"]
                for ws in sockets:  # every socket, whichever process holds it, gets the last bid's board
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if frame["type"] == "board" and frame["board"]["highest_price"] == final:
                            break
                metrics = await _metrics_of_both_processes(port)
            finally:
                for ws in sockets:
                    await ws.close()
        return metrics

    metrics = asyncio.run(scenario())
    # Two uvicorn processes served requests (each reports its resident memory under its pid) and
    # between them accepted every bid.
    rss = re.findall(r'^flashbid_process_resident_memory_bytes\{([^}]*)\}', metrics, re.MULTILINE)
    assert len(rss) == 2 and all('program="uvicorn"' in labels for labels in rss), rss
    assert re.search(r'^flashbid_bids_total\{outcome="accepted"\} 6\.0$', metrics, re.MULTILINE), metrics[:3000]
    _assert_clean_log(web)
