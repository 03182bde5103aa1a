"""What operators read: request ids end to end, the slow-request log, JSON log lines from web and
worker, /metrics (one process and summed over several), Flower's authentication and the
simulate_bidders command against a live server."""

import json
import logging
import re
import subprocess
from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from core.observability import REQUEST_ID
from tests import processes

pytestmark = pytest.mark.django_db(transaction=True)


def _sample(text: str, name: str, **labels: str) -> float | None:
    """One sample of the Prometheus text exposition, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def test_request_id_is_taken_from_the_header_and_returned(api):
    response = await api.get("/healthz", headers={"X-Request-ID": "edge-42.abc"})
    assert response.headers["X-Request-ID"] == "edge-42.abc"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 200, "inject\\nline"])
async def test_a_missing_or_unsafe_request_id_is_replaced(api, sent):
    headers = {"X-Request-ID": sent} if sent is not None else {}
    response = await api.get("/healthz", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


async def test_error_answers_carry_the_request_id_too(api):
    response = await api.get("/api/sessions/not-a-uuid", headers={"X-Request-ID": "r-404"})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "r-404"


async def test_slow_requests_are_logged_with_their_request_id(api, settings, caplog):
    settings.SLOW_REQUEST_MS = 0
    with caplog.at_level(logging.WARNING, logger="flashbid.requests"):
        await api.get("/api/sessions", headers={"X-Request-ID": "slow-1"})
    [record] = [r for r in caplog.records if r.name == "flashbid.requests"]
    assert record.getMessage().startswith("slow request GET /api/sessions 200")
    assert record.request_id == "slow-1" and record.status == 200 and record.duration_ms >= 0


async def test_fast_requests_are_not_logged(api, settings, caplog):
    settings.SLOW_REQUEST_MS = 60_000
    with caplog.at_level(logging.WARNING, logger="flashbid.requests"):
        await api.get("/healthz")
    assert not [r for r in caplog.records if r.name == "flashbid.requests"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/auth/login"), ("POST", "/api/auth/register"), ("POST", "/api/auth/password"),
    ("POST", "/login/"), ("POST", "/register/"), ("POST", "/password/"), ("POST", "/admin/login/"),
    ("POST", "/admin/password_change/"), ("POST", "/password/reset/MQ/set-password/"),
])
async def test_requests_that_hash_a_password_are_not_slow_below_their_own_threshold(api, settings, caplog, method,
                                                                                      path):
    settings.SLOW_REQUEST_MS = 0  # every other request is "slow" here
    settings.SLOW_PASSWORD_REQUEST_MS = 60_000
    with caplog.at_level(logging.WARNING, logger="flashbid.requests"):
        await api.request(method, path, json={"username": "nobody", "password": "wrong-password-1"})
        await api.get("/api/sessions")
    assert [r.path for r in caplog.records if r.name == "flashbid.requests"] == ["/api/sessions"]


async def test_a_request_that_hashes_a_password_is_logged_past_its_threshold(api, settings, caplog):
    settings.SLOW_PASSWORD_REQUEST_MS = 0
    with caplog.at_level(logging.WARNING, logger="flashbid.requests"):
        await api.post("/api/auth/login", json={"username": "nobody", "password": "wrong-password-1"})
    assert [r.path for r in caplog.records if r.name == "flashbid.requests"] == ["/api/auth/login"]


async def test_a_page_not_found_writes_no_log_line_of_its_own(api, caplog, capsys):
    """The server's access log has the one line a 404 deserves (daphne's, nginx's); Django neither
    warns "Not Found" through our handler nor prints it again through its own console handler."""
    with caplog.at_level(logging.DEBUG):
        response = await api.get("/no-such-page/")
    assert response.status_code == 404
    assert not [r for r in caplog.records if r.name.startswith("django")], caplog.records
    assert logging.getLogger("django").handlers == []
    assert "Not Found" not in capsys.readouterr().err


async def test_the_favicon_is_served(api):
    response = await api.get("/favicon.ico", follow_redirects=True)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml" and response.text.startswith("<svg")


def test_metrics_count_bids_by_outcome_and_show_the_persist_lag(client, make_session, make_user, token_for):
    session = make_session(upset_price="10.00")
    user = make_user()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}"}
    before = client.get("/metrics").content.decode()
    accepted_before = _sample(before, "flashbid_bids_total", outcome="accepted") or 0
    below_before = _sample(before, "flashbid_bids_total", outcome="below_upset_price") or 0
    bids = f"/api/sessions/{session.pk}/bids"
    assert client.post(bids, {"price": "20.00"}, content_type="application/json", **auth).status_code == 201
    assert client.post(bids, {"price": "5.00"}, content_type="application/json", **auth).status_code == 422

    text = client.get("/metrics").content.decode()
    assert _sample(text, "flashbid_bids_total", outcome="accepted") == accepted_before + 1
    assert _sample(text, "flashbid_bids_total", outcome="below_upset_price") == below_before + 1
    assert _sample(text, "flashbid_persist_stream_length", session=str(session.pk)) == 1
    assert _sample(text, "flashbid_persist_pending", session=str(session.pk)) == 0
    assert 0 <= _sample(text, "flashbid_persist_lag_seconds", session=str(session.pk)) < 60
    assert _sample(text, "flashbid_bid_seconds_count") >= 1
    rss = re.search(r'^flashbid_process_resident_memory_bytes\{program="[^"]+"\} (\S+)$', text, re.MULTILINE)
    assert float(rss.group(1)) > 10_000_000
    assert _sample(text, "flashbid_db_pool_connections", state="size") >= 1  # this process's psycopg pool
    assert _sample(text, "flashbid_db_pool_connections", state="waiting") == 0
    for name in ("flashbid_auth_cache_hits_total", "flashbid_persist_batch_events", "flashbid_settlement_seconds",
                 "flashbid_websockets_open"):
        assert f"# TYPE {name}" in text, name


def test_persist_metrics_follow_a_persist_run(client, make_session, make_user, token_for):
    from tests import bidding

    session = make_session()
    bidding.place(session.pk, [(user, ["20.00"]) for user in bidding.bidders(3)])
    call_command("persist_bids", stdout=StringIO())
    text = client.get("/metrics").content.decode()
    assert _sample(text, "flashbid_persist_batch_events_sum") >= 3
    assert _sample(text, "flashbid_persist_stream_length", session=str(session.pk)) is None  # drained


def test_metrics_are_summed_over_web_processes(started, tmp_path, make_session, make_user, auth_header):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    ports = [processes.free_port(), processes.free_port()]
    for n, port in enumerate(ports):
        started(processes.daphne, port, name=f"daphne{n}", **env)
    session = make_session()
    users = [make_user(), make_user()]
    with httpx.Client(timeout=10) as http:
        for port, user in zip(ports, users, strict=True):
            response = http.post(f"http://127.0.0.1:{port}/api/sessions/{session.pk}/bids", json={"price": "30.00"},
                                 headers=auth_header(user))
            assert response.status_code == 201
        for port in ports:  # whichever process answers, it reports both
            text = http.get(f"http://127.0.0.1:{port}/metrics").text
            assert _sample(text, "flashbid_bids_total", outcome="accepted") == 2
            rss = re.findall(r'^flashbid_process_resident_memory_bytes\{([^}]*)\}', text, re.MULTILINE)
            assert len(rss) == 2 and all('program="daphne"' in labels and "pid=" in labels for labels in rss), rss


def test_worker_logs_json_lines_with_the_request_id_of_the_request_that_sent_the_task(started):
    from worker.tasks import persist_bids

    worker = started(processes.celery_worker, LOG_FORMAT="json")
    worker.wait_for_log("ready.")
    token = REQUEST_ID.set("req-from-web-7")
    try:
        persist_bids.apply_async()
    finally:
        REQUEST_ID.reset(token)

    def task_lines():
        lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        return [line for line in lines if "worker.tasks.persist_bids" in line["message"]
                and "succeeded" in line["message"]]

    [line] = processes.wait_until(task_lines, 30, message="the task's JSON log line")
    assert line["request_id"] == "req-from-web-7"
    assert {"time", "level", "logger", "pid"} <= line.keys()


def test_flower_refuses_to_start_without_credentials_outside_development(tmp_path):
    env = processes.test_env(DEBUG="false", SECRET_KEY="s" * 40, FLOWER_BASIC_AUTH="")
    result = subprocess.run([str(processes.BIN / "celery"), "-A", "flashbid", "flower",
                             "--conf=deploy/flowerconfig.py", f"--port={processes.free_port()}"],
                            cwd=processes.ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stdout + result.stderr


def test_flower_asks_for_the_configured_credentials(started):
    port = processes.free_port()
    env = {"DEBUG": "false", "SECRET_KEY": "s" * 40, "FLOWER_BASIC_AUTH": "ops:flower-pass-1"}
    started(lambda log_dir: processes.Process(
        "flower", [str(processes.BIN / "celery"), "-A", "flashbid", "flower", "--conf=deploy/flowerconfig.py",
                   "--address=127.0.0.1", f"--port={port}"], processes.test_env(**env), log_dir))
    url = f"http://127.0.0.1:{port}/"

    def answer(auth=None):
        try:
            return httpx.get(url, auth=auth, timeout=5).status_code
        except httpx.HTTPError:
            return None

    assert processes.wait_until(lambda: answer(), 30, message="flower answers") == 401
    assert answer(("ops", "wrong")) == 401
    assert answer(("ops", "flower-pass-1")) == 200


def test_flower_started_before_any_worker_logs_no_inspect_failures(started):
    """Its first inspection finds no worker yet (as under `make up`, where all start together):
    that is no failure worth a warning per inspect method."""
    port = processes.free_port()
    flower = started(lambda log_dir: processes.Process(
        "flower", [str(processes.BIN / "celery"), "-A", "flashbid", "flower", "--conf=deploy/flowerconfig.py",
                   "--address=127.0.0.1", f"--port={port}", "--inspect_timeout=300"],
        processes.test_env(DEBUG="true", FLOWER_UNAUTHENTICATED_API="true"), log_dir))

    def workers():
        try:  # waits for an inspection of every worker, the start's own if it is still running
            return httpx.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=5).status_code
        except httpx.HTTPError:
            return None

    assert processes.wait_until(workers, 30, message="flower inspected the workers") == 200
    assert "Inspect method" not in flower.log()


def test_simulate_bidders_bids_over_http_and_reports(started, make_session):
    from auctions import live
    from auctions.models import BidEvent
    from core.redis import get_redis

    port = processes.free_port()
    started(processes.daphne, port)
    session = make_session(upset_price="5.00")
    out = StringIO()
    call_command("simulate_bidders", "--session", str(session.pk), "--bidders", "5", "--duration", "1",
                 "--rate", "20", "--listeners", "2", "--url", f"http://127.0.0.1:{port}", stdout=out)
    report = out.getvalue()
    accepted = int(re.search(r"accepted (\d+)", report).group(1))
    assert 15 <= accepted <= 21, report
    assert "p50" in report and "p99" in report and "listeners 2" in report
    assert get_redis().zcard(live.session_keys(session.pk).rank) == 5
    assert BidEvent.objects.count() == 0  # nothing persisted yet: the bids live in Redis until the worker runs

    again = StringIO()  # a second run continues above the bots' earlier prices
    call_command("simulate_bidders", "--session", str(session.pk), "--bidders", "5", "--duration", "1",
                 "--rate", "10", "--url", f"http://127.0.0.1:{port}", stdout=again)
    assert "not_higher" not in again.getvalue()



def test_simulate_bidders_snipers_extend_a_soft_close_session(started, make_session):
    """Snipers bid the price to win in the last seconds: each such bid moves the end (soft close),
    which the report counts, and the session ends later than scheduled."""
    from auctions import live
    from auctions.rules import to_us
    from core.redis import get_redis

    port = processes.free_port()
    started(processes.daphne, port)
    session = make_session(starts_in=-60, lasts=63, inventory=1, extend_window_seconds=5, extend_by_seconds=4)
    out = StringIO()
    call_command("simulate_bidders", "--session", str(session.pk), "--bidders", "2", "--duration", "6",
                 "--rate", "2", "--snipers", "3", "--snipe-seconds", "5", "--url", f"http://127.0.0.1:{port}",
                 stdout=out)
    report = out.getvalue()
    moved = int(re.search(r"the end moved (\d+) time", report).group(1))
    assert moved >= 1 and re.search(r"snipes 201: \d+", report), report
    ext_us = get_redis().hget(live.session_keys(session.pk).params, "ext_us")
    assert ext_us and int(ext_us) > to_us(session.end_time)
