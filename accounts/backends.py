"""The authentication backend: Django's ModelBackend behind the login limits (accounts.limits).

Every `authenticate()` goes through it: the API's login, the login page, the Django admin's login
form. While the client's address, or this name from this address, has too many recent failures it
raises `rate_limited` (an ApplicationError, so Django does not try another backend or count it as
a failure) before any password is hashed; a wrong password, an unknown name and an inactive
account count as one failure each."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.views.decorators.debug import sensitive_variables

from accounts.limits import login_allowed, login_allowed_sync, login_failed, login_failed_sync
from core.ratelimit import client_address


class LoginLimitedBackend(ModelBackend):
    @sensitive_variables("password")
    def authenticate(self, request, username=None, password=None, **kwargs):
        username = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = client_address(request)
        login_allowed_sync(address=address, username=username)
        user = super().authenticate(request, username=username, password=password)
        if user is None:
            login_failed_sync(address=address, username=username)
        return user

    @sensitive_variables("password")
    async def aauthenticate(self, request, username=None, password=None, **kwargs):
        username = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = client_address(request)
        await login_allowed(address=address, username=username)
        user = await super().aauthenticate(request, username=username, password=password)
        if user is None:
            await login_failed(address=address, username=username)
        return user
