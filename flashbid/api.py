"""The NinjaAPI: routers of every app under /api, and the error handlers that give every error the
contract's {"detail", "code"} body. `STATUS_OF_CODE` is the one table from an error code to an
HTTP status."""

import functools
import inspect
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponseNotAllowed
from django.urls import URLPattern
from django.urls import path as django_path
from django.utils.csp import CSP, build_policy
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger
from ninja.renderers import BaseRenderer
from redis.exceptions import RedisClusterException, RedisError

from accounts.api import router as auth_router
from auctions.api import admin_router
from auctions.api import router as sessions_router
from core.exceptions import ApplicationError, ErrorCode
from core.json import dumps, json_response
from leaderboard.api import router as leaderboard_router

logger = logging.getLogger(__name__)


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return dumps(data)


STATUS_OF_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID: 422,
    ErrorCode.INVALID_PRICE: 422,
    ErrorCode.BELOW_UPSET_PRICE: 422,
    ErrorCode.NOT_AUTHENTICATED: 401,
    ErrorCode.BAD_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NO_BID: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.USERNAME_TAKEN: 409,
    ErrorCode.EMAIL_TAKEN: 409,
    ErrorCode.SESSION_NOT_STARTED: 409,
    ErrorCode.SESSION_ENDED: 409,
    ErrorCode.SESSION_NOT_ENDED: 409,
    ErrorCode.NOT_HIGHER: 409,
    ErrorCode.NOT_SETTLED: 409,
    ErrorCode.HAS_BIDS: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.RECOVERING: 503,
}


def error_response(code: ErrorCode, detail: str, headers: dict | None = None):
    return json_response({"detail": detail, "code": str(code)}, status=STATUS_OF_CODE[code], headers=headers)


def application_error_answer(exc: ApplicationError) -> tuple[int, dict, dict[str, str]]:
    """The answer to a domain refusal: the status from STATUS_OF_CODE, the contract's body, and the
    headers the code calls for."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.code == ErrorCode.NOT_AUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    return STATUS_OF_CODE[exc.code], exc.body(), headers


def application_error_response(exc: ApplicationError):
    """application_error_answer as an HttpResponse."""
    status, body, headers = application_error_answer(exc)
    return json_response(body, status=status, headers=headers)


def _contract_405(response):
    """django-ninja answers a wrong method with a plain-text 405; give it the contract's body."""
    if isinstance(response, HttpResponseNotAllowed):
        return error_response(ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed.",
                              headers={"Allow": response["Allow"]})
    return response


def _with_contract_405(view):
    if inspect.iscoroutinefunction(view):
        @functools.wraps(view)
        async def async_wrapper(request, *args, **kwargs):
            return _contract_405(await view(request, *args, **kwargs))

        return async_wrapper

    @functools.wraps(view)
    def sync_wrapper(request, *args, **kwargs):
        return _contract_405(view(request, *args, **kwargs))

    return sync_wrapper


@csrf_exempt
async def api_not_found(request: HttpRequest, rest: str = ""):
    """Any /api/ path no route matched (also a malformed session id), whatever the method: the
    contract's 404 body. CSRF-exempt like every API view, so an unsafe method is not a 403 page."""
    return error_response(ErrorCode.NOT_FOUND, "Not found.")


class FlashBidAPI(NinjaAPI):
    """NinjaAPI whose URL patterns keep the error contract outside its exception handlers: a wrong
    method and an unmatched path are answered with {"detail", "code"} too."""

    # Overrides a private method of ninja's NinjaAPI (checked against django-ninja 1.7.1, pinned in
    # requirements.txt; tests/test_private_internals.py fails loudly if it changes shape).
    def _get_urls(self):
        patterns = [
            URLPattern(p.pattern, _with_contract_405(p.callback), p.default_args, p.name)
            if isinstance(p, URLPattern) else p
            for p in super()._get_urls()
        ]
        return [*patterns, django_path("<path:rest>", api_not_found)]


class SelfHostedSwagger(Swagger):
    """Swagger UI from our own static files (ninja's, "ninja" being an installed app: nothing from a
    CDN, and it works offline) under the pages' Content-Security-Policy. Every other API answer gets
    a policy under which nothing runs (flashbid/handlers.py); this page runs Swagger UI's scripts,
    all from /static/ (its configuration travels as a JSON block, not an inline script)."""

    def render_page(self, request, api, **kwargs):
        response = super().render_page(request, api, **kwargs)
        response.headers[CSP.HEADER_ENFORCE] = build_policy(settings.SECURE_CSP)
        return response


api = FlashBidAPI(
    title="FlashBid API",
    version="1.0.0",
    description="Real-time sealed-score auctions. Errors: {\"detail\", \"code\"}.",
    renderer=ORJSONRenderer(),
    urls_namespace="api",
    # No online validator badge (it would call validator.swagger.io).
    docs=SelfHostedSwagger(settings={"validatorUrl": None}),
)
# The hot routers first: URL resolution tries patterns in this order, so the bid and the board
# resolve without walking the auth and admin routes.
api.add_router("/", sessions_router)
api.add_router("/", leaderboard_router)
api.add_router("/auth", auth_router)
api.add_router("/admin", admin_router)


@api.exception_handler(ApplicationError)
def on_application_error(request: HttpRequest, exc: ApplicationError):
    return application_error_response(exc)


def _describe(errors: list[dict]) -> str:
    parts = []
    for error in errors[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "payload", "query", "path", "filters"))
        parts.append(f"{loc}: {error.get('msg', 'invalid')}" if loc else error.get("msg", "invalid"))
    return "; ".join(parts) or "Invalid input."


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError):
    return error_response(ErrorCode.INVALID, _describe(exc.errors))


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError):
    return error_response(ErrorCode.NOT_AUTHENTICATED, "Authentication required.",
                          headers={"WWW-Authenticate": "Bearer"})


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404):
    return error_response(ErrorCode.NOT_FOUND, "Not found.")


@api.exception_handler(RequestDataTooBig)
def on_too_big(request: HttpRequest, exc: RequestDataTooBig):
    return error_response(ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large.")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError):
    if exc.status_code == 400:  # django-ninja's "Cannot parse request body": the contract says 422
        return error_response(ErrorCode.INVALID, "The request body is not valid JSON.")
    codes = {401: ErrorCode.NOT_AUTHENTICATED, 403: ErrorCode.FORBIDDEN,
             404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 429: ErrorCode.RATE_LIMITED}
    status = exc.status_code
    code = codes.get(status, ErrorCode.INVALID if status < 500 else ErrorCode.UNAVAILABLE)
    return json_response({"detail": str(exc), "code": str(code)}, status=status)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_unavailable(request: HttpRequest, exc: Exception):
    """PostgreSQL unreachable: what needs it waits (bids keep being accepted by Redis)."""
    logger.error("database unavailable on %s: %s", request.path, exc)
    return error_response(ErrorCode.UNAVAILABLE, "The database is temporarily unavailable; try again shortly.",
                          headers={"Retry-After": "5"})


@api.exception_handler(RedisError)
@api.exception_handler(RedisClusterException)
def on_redis_error(request: HttpRequest, exc: Exception):
    """Redis unreachable or failing (on a cluster also: no node reachable, a slot no shard serves):
    the engine cannot answer; say so instead of a 500."""
    logger.error("redis error on %s: %s", request.path, exc)
    return error_response(ErrorCode.UNAVAILABLE, "The bidding engine is temporarily unavailable.",
                          headers={"Retry-After": "1"})
