"""The hand-written bid handler (flashbid.handlers.BidHandler) answers exactly as the bid's ninja
route does: every request below goes once through the application (where BidHandler takes it)
and once through the route alone (RedisOnlyHandler, ninja's operation), and the two answers
agree: status, body, headers. Requests it must not take go the usual way."""

import asyncio

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import override_settings

from core.exceptions import ApplicationError, ErrorCode
from core.observability import RequestContext
from core.redis import get_redis, session_key
from flashbid import handlers

pytestmark = pytest.mark.django_db(transaction=True)

# Headers every answer carries, with values that are the request's own.
_PER_REQUEST = {"x-request-id", "date", "server"}


@pytest.fixture
def taken(monkeypatch):
    """The requests BidHandler handled itself (their paths)."""
    paths: list[str] = []
    original = handlers.BidHandler.handle

    async def handle(self, bid, scope, receive, send):
        paths.append(scope["path"])
        return await original(self, bid, scope, receive, send)

    monkeypatch.setattr(handlers.BidHandler, "handle", handle)
    return paths


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def _post(app, path: str, **kwargs) -> httpx.Response:
    async def post() -> httpx.Response:
        async with _client(app) as client:
            return await client.post(path, **kwargs)

    return async_to_sync(post)()


def _fast(path: str, **kwargs) -> httpx.Response:
    """The answer of the whole application (where BidHandler takes the bids it may)."""
    from flashbid.asgi import application

    return _post(application, path, **kwargs)


def _route(path: str, **kwargs) -> httpx.Response:
    """The answer of the bid's ninja route alone."""
    return _post(RequestContext(handlers.RedisOnlyHandler()), path, **kwargs)


def _both(path: str, **kwargs) -> tuple[httpx.Response, httpx.Response]:
    return _fast(path, **kwargs), _route(path, **kwargs)


def _same(fast: httpx.Response, route: httpx.Response, *, body: bool = True) -> None:
    assert fast.status_code == route.status_code
    assert ({k: v for k, v in fast.headers.items() if k not in _PER_REQUEST}
            == {k: v for k, v in route.headers.items() if k not in _PER_REQUEST})
    if body:
        assert fast.content == route.content


def test_refusals_are_the_routes_refusals_word_for_word(make_session, make_user, auth_header, taken):
    session = make_session(upset_price="10.00")
    user = make_user()
    bids = f"/api/sessions/{session.pk}/bids"
    header = auth_header(user)
    assert _fast(bids, json={"price": "20.00"}, headers=header).status_code == 201

    refusals = [
        dict(json={"price": "20.00"}, headers=header),  # not higher: with the price to win
        dict(json={"price": "5.00"}, headers=header),
        dict(json={"price": "1.001"}, headers=header),
        dict(json={"price": -3}, headers=header),
        dict(json={"prize": "30.00"}, headers=header),
        dict(json=["30.00"], headers=header),
        dict(content=b"{not json", headers=header),
        dict(content=b"", headers=header),
        dict(json={"price": "30.00"}, headers={**header, "Idempotency-Key": "k" * 201}),
        dict(json={"price": "30.00"}, headers={"Authorization": "Bearer forged"}),
        dict(json={"price": "30.00"}, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        dict(json={"price": "30.00"}, headers={"Authorization": "Bearer"}),
    ]
    codes = []
    for request in refusals:
        fast, route = _both(bids, **request)
        _same(fast, route)
        codes.append((fast.status_code, fast.json()["code"]))
    assert codes == [(409, "not_higher"), (422, "below_upset_price"), *[(422, "invalid_price")] * 6,
                     (422, "invalid"), *[(401, "not_authenticated")] * 3]
    assert len(taken) == 1 + len(refusals)

    # The session's own refusals: unknown, not started, ended.
    ahead = make_session(starts_in=600)
    over = make_session(starts_in=-600, lasts=60)
    unknown = "0b0e7c4e-4a5c-4b8e-9d43-1f6c2d7e8a90"
    for session_id, code in ((unknown, "not_found"), (ahead.pk, "session_not_started"), (over.pk, "session_ended")):
        fast, route = _both(f"/api/sessions/{session_id}/bids", json={"price": "30.00"}, headers=header)
        _same(fast, route)
        assert fast.json()["code"] == code


def test_rate_limited_bids_get_the_same_retry_after(make_session, make_user, auth_header, settings, taken):
    settings.BID_RATE_LIMIT_PER_SECOND = 1
    session = make_session()
    user = make_user()
    bids = f"/api/sessions/{session.pk}/bids"
    for attempt in range(5):  # the limit's window is a second: the three requests must share one
        price = 20 + 3 * attempt
        assert _fast(bids, json={"price": f"{price}.00"}, headers=auth_header(user)).status_code in (201, 429)
        fast, route = _both(bids, json={"price": f"{price + 1}.00"}, headers=auth_header(user))
        if fast.status_code == route.status_code == 429:
            break
    else:
        pytest.fail("no two bids within one second of the first")
    _same(fast, route)
    assert fast.headers["Retry-After"] == "1"
    assert len(taken) == 2 * (attempt + 1)


def test_accepted_bids_and_replays_have_the_same_shape(make_session, make_user, auth_header, taken):
    session = make_session()
    first, second = make_user(), make_user()
    bids = f"/api/sessions/{session.pk}/bids"
    first_bid = dict(json={"price": "20.00"}, headers={**auth_header(first), "Idempotency-Key": "a"})
    second_bid = dict(json={"price": "30.00"}, headers={**auth_header(second), "Idempotency-Key": "b"})
    fast, route = _fast(bids, **first_bid), _route(bids, **second_bid)
    assert fast.status_code == route.status_code == 201
    _same(fast, route, body=False)
    assert list(fast.json()) == list(route.json())
    # A repeated key replays the first answer, whichever handler took either request.
    replayed_by_route, replayed_by_fast = _route(bids, **first_bid), _fast(bids, **second_bid)
    assert replayed_by_route.status_code == replayed_by_fast.status_code == 200
    assert (replayed_by_route.content, replayed_by_fast.content) == (fast.content, route.content)
    assert len(taken) == 2


def test_a_failing_engine_or_a_bug_is_answered_as_the_route_answers_it(
        make_session, make_user, auth_header, monkeypatch, taken, caplog):
    session = make_session()
    user = make_user()
    bids = f"/api/sessions/{session.pk}/bids"
    header = auth_header(user)
    assert (_both(bids, json={"price": "20.00"}, headers=header))[0].status_code == 201  # warm caches
    from auctions import services

    async def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "bid_place", broken)
    fast, route = _both(bids, json={"price": "21.00"}, headers=header)
    assert fast.status_code == 500
    _same(fast, route)

    from redis.exceptions import ConnectionError as RedisConnectionError

    async def unreachable(**kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(services, "bid_place", unreachable)
    caplog.clear()
    fast, route = _both(bids, json={"price": "21.00"}, headers=header)
    _same(fast, route)
    assert fast.status_code == 503 and fast.json()["code"] == "unavailable" and fast.headers["Retry-After"] == "1"
    # Logged alike: the API's handler says why, Django's request log says which request.
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelname == "ERROR"] == 2 * [
        ("flashbid.api", f"redis error on {bids}: Connection refused"),
        ("django.request", f"Service Unavailable: {bids}")]

    # A refusal that is a 5xx (the session's state being restored) is logged as the route logs it.
    async def recovering(**kwargs):
        raise ApplicationError(ErrorCode.RECOVERING, "Restoring.", retry_after=1)

    monkeypatch.setattr(services, "bid_place", recovering)
    caplog.clear()
    fast, route = _both(bids, json={"price": "21.00"}, headers=header)
    _same(fast, route)
    assert fast.status_code == 503 and fast.json()["code"] == "recovering"
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelname == "ERROR"] == 2 * [
        ("django.request", f"Service Unavailable: {bids}")]
    assert len(taken) == 4


def test_an_answer_that_cannot_be_written_is_djangos_500(make_session, make_user, auth_header, monkeypatch,
                                                         taken, caplog):
    session = make_session()
    bids = f"/api/sessions/{session.pk}/bids"

    def unwritable(data):
        raise TypeError("not JSON")

    monkeypatch.setattr(handlers, "dumps", unwritable)
    fast = _fast(bids, json={"price": "20.00"}, headers=auth_header(make_user()))
    assert fast.status_code == 500 and taken == [bids]
    assert ("django.request", f"Internal Server Error: {bids}") in [
        (r.name, r.getMessage()) for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("status, body, headers", [
    (201, {"seq": 1, "price": "20.00", "is_winning": True}, {}),
    (409, {"detail": "Not higher.", "code": "not_higher"}, {}),
    (429, {"detail": "Slow down.", "code": "rate_limited"}, {"Retry-After": "1"}),
    (401, {"detail": "Who?", "code": "not_authenticated"}, {"WWW-Authenticate": "Bearer"}),
])
def test_the_handlers_answers_are_djangos_message_for_message(status, body, headers):
    """handlers.json_send writes what Django's send_response writes for the same JSON answer once
    the API's headers are added: the same ASGI messages, headers in the same order and case."""
    from core.json import dumps, json_response

    def messages(write) -> list[dict]:
        sent = []

        async def send(message):
            sent.append(message)

        async def run():
            await write(send)

        async_to_sync(run)()
        return sent

    django_way = messages(lambda send: handlers.BidHandler().send_response(
        handlers._api_headers_added(json_response(body, status=status, headers=headers)), send))
    assert messages(lambda send: handlers.json_send(send, status, dumps(body), headers)) == django_way


def test_requests_out_of_the_ordinary_go_through_the_route(make_session, make_user, auth_header, taken):
    session = make_session()
    user = make_user()
    bids = f"/api/sessions/{session.pk}/bids"
    header = auth_header(user)
    from flashbid.asgi import application

    async def requests() -> list[httpx.Response]:
        async with _client(application) as client:
            answers = [
                await client.post(bids, content=b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
                                  headers={**header, "Content-Type": "application/json"}),
                await client.post(bids, json={"price": "20.00"}, headers={**header, "Host": "evil.example"}),
                await client.post(bids, json={"price": "20.00"},
                                  headers=[("Authorization", header["Authorization"]),
                                           ("Authorization", "Bearer forged")]),
                await client.post(bids.replace(str(session.pk), str(session.pk).upper()), json={"price": "20.00"},
                                  headers=header),
                await client.get(bids, headers=header),
                await client.post(bids, json={"price": "20.00"}),
                await client.post(bids, json={"price": "20.00"}, headers={"Authorization": ""}),
                await client.post(f"{bids}?price=20.00", json={"price": "20.00"}, headers=header),
            ]
            with override_settings(USE_X_FORWARDED_HOST=True):
                answers.append(await client.post(bids, json={"price": "21.00"}, headers=header))
            return answers

    too_big, unknown_host, twice, capitals, get, no_token, empty_token, query, forwarded = async_to_sync(requests)()
    assert (too_big.status_code, too_big.json()["code"]) == (413, "payload_too_large")
    assert (unknown_host.status_code, unknown_host.json()["code"]) == (400, "invalid")
    assert twice.status_code == 401  # Django joins repeated headers: not one valid bearer token
    assert (capitals.status_code, capitals.json()["code"]) == (404, "not_found")  # Django's uuid: lowercase
    assert (get.status_code, get.json()["code"]) == (405, "method_not_allowed")
    assert (no_token.status_code, no_token.json()["code"]) == (401, "not_authenticated")
    assert empty_token.json() == no_token.json()  # an empty header is no credentials to the route
    assert query.status_code == 201, query.text
    assert forwarded.status_code == 201
    assert taken == []


def test_a_client_gone_before_its_body_arrived_gets_nothing_and_places_nothing(
        make_session, make_user, auth_header, taken):
    from flashbid.asgi import application

    session = make_session()
    user = make_user()
    body = b'{"price": "20.00"}'
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": f"/api/sessions/{session.pk}/bids", "raw_path": b"", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"authorization", auth_header(user)["Authorization"].encode())]}
    messages = [{"type": "http.request", "body": body[:5], "more_body": True}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    async_to_sync(asyncio.wait_for)(application(scope, receive, send), 5)
    assert sent == []
    assert len(taken) == 1
    assert get_redis().xlen(session_key(session.pk, "stream")) == 0
