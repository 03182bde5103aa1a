"""HTTP handlers for the API: Django's request handling without what the API does not use.

Django's ASGIHandler runs every request through settings.MIDDLEWARE (each built-in middleware
hook is a `sync_to_async` thread hop under ASGI) inside an asgiref ThreadSensitiveContext (a fresh
one-thread executor per request), with `request_started`/`request_finished` receivers run through
`sync_to_async`. The pages and the admin need all of that. The JSON API does not:

- `APIHandler` (every `/api/` path, /readyz and /metrics): no middleware. The API authenticates by itself
  (accounts.auth: Bearer token or the session cookie, with its own CSRF check), answers only JSON
  and validates the Host header below. What the pages' security middleware would add to an answer
  that is data (nosniff, no framing, a policy under which nothing loads or runs) is added here, as
  a constant list (API_SECURITY_HEADERS). Everything else is Django's own request lifecycle.
- `RedisOnlyHandler` (the bid, the leaderboard, its meta and bids/me, /healthz): additionally no
  ThreadSensitiveContext, no request signals and no disconnect watcher. Safe because these views
  are async and, once warm, touch only Redis: no sync middleware, no ORM, no sync signal receiver
  runs. Their rare cold paths (a user or a session's parameters not yet in Redis) reach the ORM
  only through `core.db.orm`, which gives the connection back as a finished request would.
  Requests carrying the pages' session cookie and no bearer token go to APIHandler instead:
  opening a Django session is sync code (the cache, the ORM on a miss).
- `BidHandler` (the bid with a bearer token): no HttpRequest, URL resolution or ninja operation
  either; the bid's own ASGI code around the same auth, parse, service call and answers.

Private internals of Django's ASGIHandler/BaseHandler used here (`_view_middleware`,
`_template_response_middleware`, `_exception_middleware`, `_middleware_chain`, `_get_response`,
`_get_response_async`, `read_body`, `create_request`, `send_response`, `run_get_response`, and a
response's `_resource_closers`) were checked against Django 6.1.3, the version pinned in
requirements.txt. tests/test_private_internals.py fails loudly when one of them changes shape.
"""

import functools
from contextlib import closing
from io import BytesIO
from typing import NamedTuple
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response, response_for_exception
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.urls import set_script_prefix, set_urlconf
from django.utils.log import log_response

from accounts.auth import user_from_authorization
from auctions.api import BID_PATH, bid_answer
from core.exceptions import ApplicationError
from core.json import dumps, json_response
from core.routes import redis_only_pattern, route_matcher
from flashbid.api import api as ninja_api  # declares the routes, and so their Redis-only marks
from flashbid.api import application_error_answer

# Paths served by RedisOnlyHandler (the routes each app marks with core.routes.redis_only) when the
# method is one of FAST_METHODS (a method a route does not accept, e.g. GET on /bids, is answered
# 405 by the view there, without touching anything).
FAST_METHODS = frozenset({"GET", "POST", "HEAD"})
_SESSION_COOKIE = f"{settings.SESSION_COOKIE_NAME}=".encode()
# Ops endpoints for machines (JSON or Prometheus text): no sessions, cookies or CSRF either.
OPS_PATHS = frozenset({"/readyz", "/metrics"})
# On every answer of these handlers, unless the view set its own (/api/docs sets the pages' policy
# so that Swagger UI may run). An API answer is data: if a browser is ever led to render one, it may
# load nothing, run nothing and be framed by nobody.
API_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)


class APIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)

    async def get_response_async(self, request) -> HttpResponse:
        """Django's, but 4xx answers are not logged: they are the API's designed rejections
        (not_higher, rate_limited, …), counted by code in /metrics; a log line (and a thread hop)
        per rejected bid would cost the most exactly when load is highest. 5xx are logged."""
        set_urlconf(settings.ROOT_URLCONF)
        response = await self._middleware_chain(request)
        response._resource_closers.append(request.close)
        if response.status_code >= 500:
            await sync_to_async(log_response, thread_sensitive=False)(
                "%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response

    async def run_get_response(self, request) -> HttpResponse:
        try:
            request.get_host()  # what CommonMiddleware would check: Host must be in ALLOWED_HOSTS
        except DisallowedHost:
            response = json_response({"detail": "Invalid Host header.", "code": "invalid"}, status=400)
        else:
            response = await super().run_get_response(request)
        return _api_headers_added(response)


def _api_headers_added(response: HttpResponse) -> HttpResponse:
    headers = response.headers
    for name, value in API_SECURITY_HEADERS:
        if name not in headers:
            headers[name] = value
    if not response.streaming and "Content-Length" not in response:
        # What CommonMiddleware would add; without it the server falls back to chunked encoding.
        response.headers["Content-Length"] = str(len(response.content))
    return response


class RedisOnlyHandler(APIHandler):
    """APIHandler without the per-request thread machinery, for the Redis-only views."""

    async def __call__(self, scope, receive, send) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            response = error_response if request is None else await self.run_get_response(request)
            await self.send_response(response, send)


class BidRequest(NamedTuple):
    session_id: UUID
    authorization: str
    idempotency_key: str | None


@functools.lru_cache(maxsize=64)
def _host_allowed(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Django's check of a Host header against ALLOWED_HOSTS (as HttpRequest.get_host makes it),
    remembered: a web process sees a handful of Host values, and the check cost ~5 us a bid
    (0.7 us remembered). Bounded, so Host values made up by clients only churn it."""
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed_hosts)


class BidHandler(RedisOnlyHandler):
    """The bid, `POST /api/sessions/{uuid}/bids` with a bearer token, hand-written on ASGI.

    Our own code because it is the hot path (the one handler written by hand): what
    Django and django-ninja do per request (an HttpRequest with its META, URL resolution, ninja's
    operation, auth and response machinery) was most of a bid's CPU in the web process
    (docs/PERFORMANCE.md). It does no less: the same Host check, the same auth
    (accounts.auth.user_from_authorization), the same parse and answer (auctions.api.bid_answer),
    the same error answers (the API's exception handlers; an unexpected error is Django's 500),
    the same headers. It takes only requests that are plain in every way that matters: anything
    else (no, an empty or a repeated Authorization, a repeated Idempotency-Key or Host header, a
    Host not allowed, no or an over-limit Content-Length, a query string, USE_X_FORWARDED_HOST on)
    goes the usual way, through ninja's route, which OpenAPI documents; tests/test_bid_handler.py
    holds the two to the same answers."""

    def __init__(self) -> None:
        super().__init__()
        self.parameters = route_matcher("/api", BID_PATH)

    def takes(self, scope) -> BidRequest | None:
        """What this handler needs of a request it takes, or None for one it leaves to the route."""
        if scope["method"] != "POST" or scope.get("query_string") or settings.USE_X_FORWARDED_HOST:
            return None
        parameters = self.parameters(scope["path"])
        if parameters is None:
            return None
        seen = {}
        for name, value in scope["headers"]:
            if name in _BID_HEADERS:
                if name in seen:
                    return None
                seen[name] = value.decode("latin-1")
        authorization, length, host = seen.get(b"authorization"), seen.get(b"content-length"), seen.get(b"host")
        # An empty Authorization is no credentials to the route (it may then read the session cookie).
        if not authorization or host is None or length is None or not (length.isascii() and length.isdigit()):
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and int(length) > limit:
            return None
        if not _host_allowed(host, tuple(settings.ALLOWED_HOSTS)):
            return None
        return BidRequest(parameters["session_id"], authorization, seen.get(b"idempotency-key"))

    async def handle(self, bid: BidRequest, scope, receive, send) -> None:
        chunks = []
        while True:  # at most Content-Length bytes, which takes() checked: the server holds a body to it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            user = await user_from_authorization(bid.authorization)
            status, data = await bid_answer(session_id=bid.session_id, user=user, body=body,
                                            idempotency_key=bid.idempotency_key)
            headers = {}
        except ApplicationError as exc:  # a refusal: the common error, answered without a request object
            status, data, headers = application_error_answer(exc)
        except Exception as exc:  # noqa: BLE001 (answered as the route would answer it)
            request, response = await self._exception_response(scope, body, exc)
            return await self._logged_send(request, response, scope, send)
        if status >= 500:  # rare (a 503 `recovering`, say): logged as APIHandler logs them
            return await self._logged_send(None, json_response(data, status=status, headers=headers), scope, send)
        try:
            payload = dumps(data)
        except Exception as exc:  # noqa: BLE001 (a bug: Django's 500, as the route would answer it)
            request, response = await self._exception_response(scope, body, exc)
            return await self._logged_send(request, response, scope, send)
        await json_send(send, status, payload, headers)

    async def _logged_send(self, request: HttpRequest | None, response: HttpResponse, scope, send) -> None:
        if response.status_code >= 500:
            await sync_to_async(log_response, thread_sensitive=False)(
                "%s: %s", response.reason_phrase, scope["path"], response=response, request=request)
        await self.send_response(_api_headers_added(response), send)

    async def _exception_response(self, scope, body: bytes, exc: Exception) -> tuple[HttpRequest, HttpResponse]:
        """What the route answers to `exc`, as the route runs it: the API's exception handler for it
        (Redis or PostgreSQL away: 503), else Django's 500 (in a thread, as Django calls it)."""
        set_script_prefix(get_script_prefix(scope))
        request, _ = self.create_request(scope, BytesIO(body))  # takes() saw no query string to fail on
        try:
            return request, ninja_api.on_exception(request, exc)
        except Exception as unhandled:  # noqa: BLE001
            return request, await sync_to_async(response_for_exception, thread_sensitive=False)(request, unhandled)


_BID_HEADERS = frozenset({b"authorization", b"content-length", b"host", b"idempotency-key"})

_JSON_TYPE = (b"Content-Type", b"application/json")
_SECURITY_HEADERS = tuple((name.encode("ascii"), value.encode("latin-1")) for name, value in API_SECURITY_HEADERS)


async def json_send(send, status: int, body: bytes, headers: dict[str, str]) -> None:
    """What Django's send_response sends for `json_response(..., status, headers)` once
    `_api_headers_added` has been through it: the same messages, the same headers in the same
    order, without building the HttpResponse (its header mapping, cookies and send_response
    were 17 us of a bid's CPU; this is 1.3 us). Django would split a body over 64 KiB into several
    messages; a bid's answer is under 1 KB. tests/test_bid_handler.py holds the two equal."""
    await send({"type": "http.response.start", "status": status, "headers": [
        *((name.encode("ascii"), value.encode("latin-1")) for name, value in headers.items()), _JSON_TYPE,
        *_SECURITY_HEADERS, (b"Content-Length", str(len(body)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _cookie_authenticated(scope) -> bool:
    """A request that may authenticate with the pages' session cookie (no Authorization header).
    Opening a Django session goes through the cache's sync API and, on a miss, the ORM: such
    requests (the pages' own bids and reads) take APIHandler's full request lifecycle."""
    cookie = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            return False
        if name == b"cookie" and _SESSION_COOKIE in value:
            cookie = True
    return cookie


def http_router(django_application):
    """The ASGI app for HTTP: the API's handlers for /api/, Django's own for the rest."""
    api = APIHandler()
    redis_only = RedisOnlyHandler()
    fast_path = redis_only_pattern("/api")  # flashbid.api, imported above, has every router's marks
    bids = BidHandler()

    async def route(scope, receive, send):
        path = scope["path"]
        if path.startswith("/api/"):
            if (bid := bids.takes(scope)) is not None:
                return await bids.handle(bid, scope, receive, send)
            if scope["method"] in FAST_METHODS and fast_path.fullmatch(path) and not _cookie_authenticated(scope):
                return await redis_only(scope, receive, send)
            return await api(scope, receive, send)
        if path == "/healthz":  # async, touches nothing: the stack's own floor, for load balancers
            return await redis_only(scope, receive, send)
        if path in OPS_PATHS:
            return await api(scope, receive, send)
        return await django_application(scope, receive, send)

    return route
