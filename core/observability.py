"""Request ids, structured logs and the slow-request log.

A request id comes from the `X-Request-ID` header (nginx sets it) or is made here; it lives in a
context variable for the request's whole life (async code and sync_to_async threads alike), is
added to every log record, returned in the response header, and carried into Celery tasks
published while handling the request (a message header). Beat's own ticks get `task-<task id>`.

The ASGI wrapper is plain async code around the application: no Django middleware, so it adds no
thread hop to the bid path.
"""

import functools
import logging
import os
import re
import time
from contextvars import ContextVar

from django.conf import settings

from core.metrics import process_gauges_refresh

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
HEADER = "X-Request-ID"
_HEADER_BYTES = HEADER.lower().encode()
# What we accept from outside: nginx's $request_id (32 hex) or any similar token, never a log injection.
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

logger = logging.getLogger("flashbid.requests")


def request_id_new() -> str:
    return os.urandom(16).hex()  # 32 hex digits as uuid4().hex, without the UUID object (3.5 -> 0.6 us)


def request_id_from(value: str | None) -> str:
    return value if value and _VALID.fullmatch(value) else request_id_new()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (None outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class NotFoundFilter(logging.Filter):
    """Drops Django's "Not Found: <path>" warnings (django.request, status 404): the server's access
    log (daphne's, nginx's) already has one line for each, and a 404 is the client's business, not
    an operator's. Other 4xx and every 5xx are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 404


@functools.cache
def _password_paths(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def slow_threshold_ms(path: str) -> float:
    """SLOW_REQUEST_MS, or SLOW_PASSWORD_REQUEST_MS for the paths that hash a password
    (PASSWORD_HASHING_PATHS: login, registration, password change and reset, the admin's login):
    hashing takes most of a second by design, so those are slow only well past it."""
    if _password_paths(settings.PASSWORD_HASHING_PATHS).match(path):
        return settings.SLOW_PASSWORD_REQUEST_MS
    return settings.SLOW_REQUEST_MS


class RequestContext:
    """ASGI wrapper: request id in, request id out, one log line for requests slower than
    SLOW_REQUEST_MS (core.observability.slow_threshold_ms), and the process gauges refreshed now
    and then (core.metrics)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == _HEADER_BYTES:
                incoming = value.decode("latin-1")
                break
        request_id = request_id_from(incoming)
        token = REQUEST_ID.set(request_id)
        if scope["type"] == "websocket":
            try:
                return await self.app(scope, receive, send)
            finally:
                REQUEST_ID.reset(token)

        started = time.perf_counter()
        status = 0
        header = (_HEADER_BYTES, request_id.encode())

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            if elapsed_ms >= slow_threshold_ms(scope["path"]):
                logger.warning("slow request %s %s %d %.1f ms", scope["method"], scope["path"], status, elapsed_ms,
                               extra={"method": scope["method"], "path": scope["path"], "status": status,
                                      "duration_ms": round(elapsed_ms, 1)})
            process_gauges_refresh()
            REQUEST_ID.reset(token)


def celery_signals_connect() -> None:
    """Carry the request id into tasks published during a request, and set it in the worker."""
    from celery.signals import before_task_publish, task_postrun, task_prerun

    @before_task_publish.connect(weak=False)
    def _publish(headers=None, **kwargs):
        request_id = REQUEST_ID.get()
        if request_id and headers is not None:
            headers.setdefault("request_id", request_id)

    @task_prerun.connect(weak=False)
    def _prerun(task_id=None, task=None, **kwargs):
        if task is None:
            return
        carried = getattr(task.request, "request_id", None)
        task.request.request_id_token = REQUEST_ID.set(request_id_from(carried) if carried else f"task-{task_id}")

    @task_postrun.connect(weak=False)
    def _postrun(task=None, **kwargs):
        token = getattr(task.request, "request_id_token", None) if task is not None else None
        if token is not None:
            REQUEST_ID.reset(token)
        process_gauges_refresh(force=True)
