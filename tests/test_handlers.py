"""The lean HTTP handlers (flashbid.handlers) keep their promises: the Redis-only routes run no
sync code at all once warm (no thread hop: no middleware, no signal receiver, no ORM), their cold
paths give database connections back, the pages keep Django's full request lifecycle, and the API
still checks the Host header and answers in the contract's shape."""

import asgiref.sync
import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_started
from django.db import connection

from core.routes import redis_only_pattern
from flashbid import api as _api  # noqa: F401  (the routers mark their Redis-only routes)

FAST_PATH = redis_only_pattern("/api")

pytestmark = pytest.mark.django_db(transaction=True)


def _request(method: str, path: str, **kwargs) -> httpx.Response:
    from flashbid.asgi import application

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.request(method, path, **kwargs)

    return async_to_sync(go)()


@pytest.fixture
def thread_hops(monkeypatch):
    """Every sync_to_async call made while a request is handled (the app's, Django's, asgiref's)."""
    calls: list[str] = []
    original = asgiref.sync.SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(asgiref.sync.SyncToAsync, "__call__", counting)
    return calls


@pytest.fixture
def started_signals():
    sent = []

    def receiver(sender, **kwargs):
        sent.append(sender)

    request_started.connect(receiver)
    yield sent
    request_started.disconnect(receiver)


def test_the_fast_routes_are_exactly_the_redis_only_views():
    sid = "0b0e7c4e-4a5c-4b8e-9d43-1f6c2d7e8a90"
    for tail in ("bids", "bids/me", "leaderboard", "leaderboard/meta"):
        assert FAST_PATH.fullmatch(f"/api/sessions/{sid}/{tail}")
    for path in (f"/api/sessions/{sid}", f"/api/sessions/{sid}/results", "/api/sessions", "/api/auth/login",
                 f"/api/admin/sessions/{sid}/settle", f"/api/sessions/{sid}/leaderboard/x"):
        assert not FAST_PATH.fullmatch(path), path


def test_warm_redis_only_requests_make_no_thread_hop_and_send_no_request_signal(
        make_session, make_user, auth_header, thread_hops, started_signals):
    session = make_session()
    user = make_user()
    base = f"/api/sessions/{session.pk}"
    assert _request("POST", f"{base}/bids", json={"price": "11.00"}, headers=auth_header(user)).status_code == 201
    thread_hops.clear()
    started_signals.clear()

    answers = [
        _request("POST", f"{base}/bids", json={"price": "12.00"}, headers=auth_header(user)),
        _request("GET", f"{base}/bids/me", headers=auth_header(user)),
        _request("GET", f"{base}/leaderboard"),
        _request("GET", f"{base}/leaderboard/meta"),
        _request("GET", "/healthz"),
    ]
    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200]
    assert thread_hops == []
    assert started_signals == []
    assert all(a.headers["X-Content-Type-Options"] == "nosniff" for a in answers)


def test_rejections_on_the_fast_routes_make_no_thread_hop_either(make_session, make_user, auth_header, thread_hops):
    session = make_session(upset_price="10.00")
    user = make_user()
    bids = f"/api/sessions/{session.pk}/bids"
    assert _request("POST", bids, json={"price": "11.00"}, headers=auth_header(user)).status_code == 201
    thread_hops.clear()
    answers = [
        _request("POST", bids, json={"price": "5.00"}, headers=auth_header(user)),
        _request("POST", bids, json={"price": "abc"}, headers=auth_header(user)),
        _request("POST", bids, json={"price": "12.00"}, headers={"Authorization": "Bearer forged"}),
        _request("GET", bids),
    ]
    assert [a.status_code for a in answers] == [422, 422, 401, 405]
    assert thread_hops == []


def test_a_cold_bid_reaches_the_database_and_gives_the_connection_back(make_session, make_user, auth_header):
    from accounts.user_cache import local_clear
    from core.redis import get_redis

    session = make_session()
    user = make_user()
    get_redis().flushdb()  # cold: neither the session's parameters nor the user are in Redis
    local_clear()
    assert connection.connection is not None  # this thread's, opened to create them
    response = _request("POST", f"/api/sessions/{session.pk}/bids", json={"price": "11.00"},
                        headers=auth_header(user))
    assert response.status_code == 201
    # Called from this (sync) thread, the request's ORM work ran in this thread: core.db.orm
    # closed the connection afterwards, as the end of a request would.
    assert connection.connection is None


def test_pages_keep_the_full_request_lifecycle(started_signals):
    response = _request("GET", "/admin/login/")
    assert response.status_code == 200
    assert started_signals, "request_started was sent"
    assert "csrftoken" in response.cookies  # CsrfViewMiddleware ran


def test_the_api_refuses_an_unknown_host_in_the_contracts_shape(make_session):
    session = make_session()
    for path in (f"/api/sessions/{session.pk}", f"/api/sessions/{session.pk}/leaderboard"):
        response = _request("GET", path, headers={"Host": "evil.example"})
        assert response.status_code == 400
        assert response.json() == {"detail": "Invalid Host header.", "code": "invalid"}


def test_cookie_authenticated_bids_take_the_full_lifecycle_and_need_the_csrf_token(
        client, make_session, make_user, started_signals):
    """The pages' own path, through the real ASGI application (no middleware on the API): the
    session cookie authenticates, CSRF is checked by accounts.auth, and the request runs with
    Django's request lifecycle (APIHandler), because opening a session is sync code."""
    from django.conf import settings
    from django.middleware.csrf import _get_new_csrf_string

    session = make_session()
    user = make_user()
    client.force_login(user)
    csrf = _get_new_csrf_string()
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}; csrftoken={csrf}"
    bids = f"/api/sessions/{session.pk}/bids"

    refused = _request("POST", bids, json={"price": "11.00"}, headers={"Cookie": cookie})
    assert refused.status_code == 403
    assert refused.json() == {"detail": "CSRF check failed: send the X-CSRFToken header.", "code": "forbidden"}
    started_signals.clear()
    accepted = _request("POST", bids, json={"price": "11.00"}, headers={"Cookie": cookie, "X-CSRFToken": csrf})
    assert accepted.status_code == 201 and accepted.json()["user_id"] == str(user.pk)
    assert started_signals, "the cookie request ran Django's request lifecycle"
    mine = _request("GET", f"{bids}/me", headers={"Cookie": cookie})
    assert mine.status_code == 200 and mine.json()["price"] == "11.00"


def test_every_api_answer_may_not_be_framed_or_run_anything(make_session, make_user, auth_header):
    """What the pages get from their security middleware, the API gets from its handlers: on the fast
    path, on the full API path, on rejections and on the handler's own Host refusal."""
    session = make_session(upset_price="10.00")
    user = make_user()
    base = f"/api/sessions/{session.pk}"
    answers = {
        "bid (RedisOnlyHandler)": _request("POST", f"{base}/bids", json={"price": "11.00"}, headers=auth_header(user)),
        "rejected bid": _request("POST", f"{base}/bids", json={"price": "1.00"}, headers=auth_header(user)),
        "board": _request("GET", f"{base}/leaderboard"),
        "session (APIHandler)": _request("GET", base),
        "unknown path": _request("GET", "/api/no-such-endpoint"),
        "unknown host": _request("GET", base, headers={"Host": "evil.example"}),
        "healthz": _request("GET", "/healthz"),
        "metrics": _request("GET", "/metrics"),
    }
    for what, response in answers.items():
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'", what
        assert response.headers["X-Frame-Options"] == "DENY", what
        assert response.headers["X-Content-Type-Options"] == "nosniff", what
