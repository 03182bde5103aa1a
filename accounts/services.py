"""Account writes: registration, login, weight changes."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import aauthenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest

from accounts.models import User
from accounts.tokens import token_issue
from core.exceptions import ApplicationError, ErrorCode
from core.ratelimit import rate_limit_hit
from core.redis import key


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(ErrorCode.INVALID, f"{field}: {message}", field=field)


@transaction.atomic
def user_register(*, username: str, email: str, password: str) -> User:
    """Create a bidder. Raises `invalid` for a bad field, `username_taken`/`email_taken` for a taken one."""
    username, email = username.strip(), email.strip().lower()
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise _invalid("username", " ".join(exc.messages)) from None
    if not 1 <= len(username) <= 150:
        raise _invalid("username", "1 to 150 characters.")
    try:
        validate_email(email)
    except ValidationError:
        raise _invalid("email", "enter a valid email address.") from None
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise _invalid("password", " ".join(exc.messages)) from None
    if User.objects.filter(username__iexact=username).exists():
        raise ApplicationError(ErrorCode.USERNAME_TAKEN, "That username is taken.", field="username")
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError(ErrorCode.EMAIL_TAKEN, "That email is already registered.", field="email")
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError:  # lost a race with an identical registration
        raise ApplicationError(ErrorCode.USERNAME_TAKEN, "That username or email is taken.") from None
    return candidate


def client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


async def user_login(*, request: HttpRequest, username: str, password: str) -> User:
    """Check credentials, rate limited per client address and per username.

    A wrong password and an unknown user get the same answer (Django's backend also spends the
    same hashing time on both)."""
    retry_after = await rate_limit_hit(
        [key("login", "addr", client_address(request)), key("login", "user", username.strip().lower())],
        limit=settings.LOGIN_RATE_LIMIT_PER_MINUTE,
        window_seconds=60,
    )
    if retry_after is not None:
        raise ApplicationError(ErrorCode.RATE_LIMITED, "Too many login attempts; try again later.",
                               retry_after=retry_after)
    user = await aauthenticate(request, username=username.strip(), password=password)
    if user is None:
        raise ApplicationError(ErrorCode.BAD_CREDENTIALS, "Wrong username or password.")
    return user


def token_response(user: User) -> dict:
    token, expires_in = token_issue(user_id=str(user.pk), token_version=user.token_version)
    return {"user": user, "access_token": token, "token_type": "bearer", "expires_in": expires_in}


@transaction.atomic
def user_set_weight(*, user_id: str, weight: float) -> User:
    user = User.objects.select_for_update().filter(pk=user_id).first()
    if user is None:
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such user.")
    user.weight = weight
    user.save(update_fields=["weight"])
    return user


user_register_async = sync_to_async(user_register)
