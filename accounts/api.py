"""Auth API: register, login, me, password change, logout (everywhere)."""

from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from accounts.auth import user_auth
from accounts.models import User
from accounts.services import (
    token_response,
    user_login,
    user_password_change_async,
    user_register_async,
    user_tokens_revoke_async,
)
from core.exceptions import ApplicationError, ErrorCode, ErrorOut, Text
from core.ratelimit import client_address

router = Router(tags=["auth"])


class RegisterIn(Schema):
    username: Text = Field(max_length=150)
    email: Text = Field(max_length=254)
    password: str = Field(max_length=128)


class LoginIn(Schema):
    username: Text = Field(max_length=150)
    password: str = Field(max_length=128)


class PasswordChangeIn(Schema):
    old_password: str = Field(max_length=128)
    new_password: str = Field(max_length=128)


class UserOut(Schema):
    id: UUID
    username: str
    email: str
    weight: float
    is_admin: bool


class TokenOut(Schema):
    user: UserOut
    access_token: str
    token_type: str
    expires_in: int


@router.post("/register", response={201: TokenOut, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut})
async def register(request: HttpRequest, payload: RegisterIn):
    user = await user_register_async(username=payload.username, email=payload.email, password=payload.password,
                                     address=client_address(request))
    return Status(201, token_response(user))


@router.post("/login", response={200: TokenOut, 401: ErrorOut, 422: ErrorOut, 429: ErrorOut})
async def login(request: HttpRequest, payload: LoginIn):
    user = await user_login(request=request, username=payload.username, password=payload.password)
    return token_response(user)


@router.get("/me", response={200: UserOut, 401: ErrorOut}, auth=user_auth)
async def me(request: HttpRequest):
    user = await User.objects.filter(pk=request.auth.id).afirst()
    if user is None:
        raise ApplicationError(ErrorCode.NOT_AUTHENTICATED, "This account no longer exists.")
    return user


@router.post("/password", response={200: TokenOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut, 429: ErrorOut},
             auth=user_auth)
async def password_change(request: HttpRequest, payload: PasswordChangeIn):
    """Change the caller's password: every token and login session issued before stops working;
    the answer carries a new token. A wrong old_password is 422 and counts as a failed login."""
    user = await user_password_change_async(user_id=request.auth.id, old_password=payload.old_password,
                                            new_password=payload.new_password, address=client_address(request))
    return token_response(user)


@router.post("/logout", response={204: None, 401: ErrorOut, 403: ErrorOut}, auth=user_auth)
async def logout(request: HttpRequest):
    """Log the caller out everywhere: every token (and login session) of this user stops working
    within AUTH_LOCAL_CACHE_TTL_SECONDS (5 s) at most; in milliseconds where the web processes hear
    the user cache's change channel (accounts.user_cache)."""
    await user_tokens_revoke_async(user_id=request.auth.id)
    return Status(204, None)
