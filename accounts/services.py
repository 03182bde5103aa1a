"""Account writes: registration, login, password change, revocation, weight changes."""

from asgiref.sync import sync_to_async
from django.contrib.auth import aauthenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest

from accounts.limits import login_allowed_sync, login_failed_sync, registration_allowed_sync
from accounts.models import User, token_version_bump
from accounts.tokens import token_issue
from accounts.user_cache import user_cache_refresh
from accounts.usernames import username_normalize, username_skeleton
from core.exceptions import ApplicationError, ErrorCode


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(ErrorCode.INVALID, f"{field}: {message}", field=field)


@transaction.atomic
def user_register(*, username: str, email: str, password: str, address: str) -> User:
    """Create a bidder. Raises `invalid` for a bad field, `username_taken` for a name that is taken
    or looks like a taken one (accounts.usernames), `email_taken`, and `rate_limited` when `address`
    (the client's) has registered too often lately (accounts.limits)."""
    username, email = username_normalize(username), email.strip().lower()
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
    registration_allowed_sync(address=address)
    if User.objects.filter(username_skeleton=username_skeleton(username)).exists():
        raise ApplicationError(ErrorCode.USERNAME_TAKEN, "That username is taken, or looks like one that is.",
                               field="username")
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError(ErrorCode.EMAIL_TAKEN, "That email is already registered.", field="email")
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError:  # lost a race with an identical (or look-alike) registration
        raise ApplicationError(ErrorCode.USERNAME_TAKEN, "That username or email is taken.") from None
    return candidate


async def user_login(*, request: HttpRequest, username: str, password: str) -> User:
    """Check credentials, under the login limits (the authentication backend, accounts.backends,
    raises `rate_limited`).

    A wrong password and an unknown user get the same answer (Django's backend also spends the
    same hashing time on both)."""
    user = await aauthenticate(request, username=username, password=password)
    if user is None:
        raise ApplicationError(ErrorCode.BAD_CREDENTIALS, "Wrong username or password.")
    return user


def user_password_change(*, user_id: str, old_password: str, new_password: str, address: str) -> User:
    """Set a new password for a signed-in user who proves the current one. A wrong current password
    counts as a failed login (`invalid` on old_password; `rate_limited` once there are too many,
    accounts.limits); a new password the validators refuse is `invalid` on new_password.

    Saving the new password revokes every token and login session of the user (User.save moves
    the token version on); the returned user carries the new version, for a new token."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise ApplicationError(ErrorCode.NOT_AUTHENTICATED, "This account no longer exists or is inactive.")
    login_allowed_sync(address=address, username=user.username)
    if not user.check_password(old_password):
        login_failed_sync(address=address, username=user.username)
        raise _invalid("old_password", "that is not your current password.")
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise _invalid("new_password", " ".join(exc.messages)) from None
    user.set_password(new_password)
    user.save()
    return user


@transaction.atomic
def user_tokens_revoke(*, user_id: str) -> int:
    """Log the user out everywhere: every token and login session issued so far stops working, in
    every process within the local auth cache's short TTL (AUTH_LOCAL_CACHE_TTL_SECONDS) at most,
    in milliseconds where it hears the change channel (accounts.user_cache). Returns the new token
    version."""
    version = token_version_bump(user_id)
    if version is None:
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such user.")
    transaction.on_commit(lambda: user_cache_refresh(user_id))
    return version


def token_response(user: User) -> dict:
    token, expires_in = token_issue(user_id=str(user.pk), token_version=user.token_version)
    return {"user": user, "access_token": token, "token_type": "bearer", "expires_in": expires_in}


# The weight's range (the user_weight_in_range constraint says the same to the database).
MAX_WEIGHT = 1_000_000


def weight_validate(*, weight: float) -> None:
    """A bidder's scoring weight: a number from 0 to MAX_WEIGHT. Raises `invalid` in words (the API
    and the admin's forms alike)."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= MAX_WEIGHT:
        raise _invalid("weight", f"must be a number from 0 to {MAX_WEIGHT:,}.")


@transaction.atomic
def user_set_weight(*, user_id: str, weight: float) -> User:
    weight_validate(weight=weight)
    user = User.objects.select_for_update().filter(pk=user_id).first()
    if user is None:
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such user.")
    user.weight = weight
    user.save(update_fields=["weight"])
    return user


user_register_async = sync_to_async(user_register)
user_password_change_async = sync_to_async(user_password_change)
user_tokens_revoke_async = sync_to_async(user_tokens_revoke)
