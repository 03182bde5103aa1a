"""Authenticating API requests: a Bearer JWT, or the Django session cookie of the pages (with CSRF
on unsafe methods). Neither path runs SQL once the user's caches are warm."""

from django.conf import settings
from django.http import HttpRequest
from ninja.security.base import AuthBase
from ninja.utils import check_csrf

from accounts.selectors import login_session, user_from_login_session, user_from_token
from accounts.user_cache import CurrentUser
from core.exceptions import ApplicationError, ErrorCode

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _unauthenticated(detail: str = "Authentication credentials were not provided or are invalid.") -> ApplicationError:
    return ApplicationError(ErrorCode.NOT_AUTHENTICATED, detail)


def _session_of(request: HttpRequest):
    """The request's Django session: SessionMiddleware's on the pages; the API runs no middleware
    (flashbid.handlers), so there it is opened from the cookie here."""
    session = getattr(request, "session", None)
    if session is None:
        session = request.session = login_session(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    return session


async def user_from_authorization(header: str) -> CurrentUser:
    """The user an `Authorization: Bearer <token>` header's value speaks for; 401 for any other
    value, and for a token that is bad, expired or revoked."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("Use an 'Authorization: Bearer <token>' header.")
    user = await user_from_token(token)
    if user is None:
        raise _unauthenticated("The token is invalid, expired or revoked.")
    return user


async def authenticate(request: HttpRequest) -> CurrentUser | None:
    """The caller, or None when the request carries no credentials at all.

    Raises 401 for credentials that are present but bad, and 403 for a cookie-authenticated
    unsafe request without a valid CSRF token."""
    header = request.headers.get("Authorization")
    if header:
        return await user_from_authorization(header)
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return None
    user = await user_from_login_session(_session_of(request))
    if user is not None and request.method not in SAFE_METHODS and check_csrf(request) is not None:
        raise ApplicationError(ErrorCode.FORBIDDEN, "CSRF check failed: send the X-CSRFToken header.")
    return user


async def require_user(request: HttpRequest) -> CurrentUser:
    user = await authenticate(request)
    if user is None:
        raise _unauthenticated()
    return user


async def require_admin(request: HttpRequest) -> CurrentUser:
    user = await require_user(request)
    if not user.is_admin:
        raise ApplicationError(ErrorCode.FORBIDDEN, "This endpoint is for admins.")
    return user


class UserAuth(AuthBase):
    """django-ninja auth for the API: runs before the body is parsed, sets request.auth to the
    CurrentUser, and documents the bearer scheme in OpenAPI."""

    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_bearerFormat = "JWT"

    def __init__(self, *, admin: bool = False) -> None:
        super().__init__()
        self.admin = admin
        self.is_async = True

    async def __call__(self, request: HttpRequest) -> CurrentUser:
        return await (require_admin if self.admin else require_user)(request)


user_auth = UserAuth()
admin_auth = UserAuth(admin=True)
