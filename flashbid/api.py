"""The NinjaAPI: routers of every app under /api, and the error handlers that give every 4xx the
contract's {"detail", "code"} body."""

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer

from accounts.api import router as auth_router
from auctions.api import admin_router
from auctions.api import router as sessions_router
from flashbid.errors import ApiError, ErrorCode
from flashbid.json import dumps, json_response
from leaderboard.api import router as leaderboard_router

logger = logging.getLogger(__name__)


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return dumps(data)


api = NinjaAPI(
    title="FlashBid API",
    version="1.0.0",
    description="Real-time sealed-score auctions. Errors: {\"detail\", \"code\"}.",
    renderer=ORJSONRenderer(),
    urls_namespace="api",
)
api.add_router("/auth", auth_router)
api.add_router("/", sessions_router)
api.add_router("/", leaderboard_router)
api.add_router("/admin", admin_router)


def error_response(status: int, code: ErrorCode, detail: str, headers: dict | None = None):
    return json_response({"detail": detail, "code": str(code)}, status=status, headers=headers)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError):
    return json_response(exc.body(), status=exc.status, headers=exc.headers)


def _describe(errors: list[dict]) -> str:
    parts = []
    for error in errors[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "payload", "query", "path", "filters"))
        parts.append(f"{loc}: {error.get('msg', 'invalid')}" if loc else error.get("msg", "invalid"))
    return "; ".join(parts) or "Invalid input."


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError):
    return error_response(422, ErrorCode.INVALID, _describe(exc.errors))


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError):
    return error_response(401, ErrorCode.NOT_AUTHENTICATED, "Authentication required.",
                          headers={"WWW-Authenticate": "Bearer"})


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404):
    return error_response(404, ErrorCode.NOT_FOUND, "Not found.")


@api.exception_handler(RequestDataTooBig)
def on_too_big(request: HttpRequest, exc: RequestDataTooBig):
    return error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large.")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError):
    codes = {400: ErrorCode.INVALID, 401: ErrorCode.NOT_AUTHENTICATED, 403: ErrorCode.FORBIDDEN,
             404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 429: ErrorCode.RATE_LIMITED}
    status = exc.status_code
    code = codes.get(status, ErrorCode.INVALID if status < 500 else ErrorCode.UNAVAILABLE)
    return error_response(status, code, str(exc))
