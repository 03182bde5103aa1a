"""The accounts' abuse limits (windows in Redis through core.ratelimit; rates in settings):

- login *failures* per client address (LOGIN_FAILURES_PER_ADDRESS) and per (name, address)
  (LOGIN_FAILURES_PER_NAME_AND_ADDRESS), checked before the password and counted only when it is
  wrong. Only the failures of one address count against it: nobody elsewhere can lock a bidder out
  by failing on their name, and logging in correctly costs nothing. The API, the pages and the
  Django admin share them through the authentication backend (accounts.backends), and the
  password-change forms count a wrong current password the same way;
- registrations per client address (REGISTRATIONS_PER_ADDRESS), every attempt that gets past the
  field checks (a taken name or e-mail counts: it tells who is registered);
- password-reset requests per client address (PASSWORD_RESETS_PER_ADDRESS): each one may send a
  mail, to an address the requester need not own.

A refusal is `rate_limited` with the seconds to wait (retry_after). Names are compared folded
(accounts.usernames), so "Carol" and "carol" share a window."""

import asyncio

from django.conf import settings

from accounts.usernames import username_fold
from core.exceptions import ApplicationError, ErrorCode
from core.ratelimit import limit_check, limit_check_sync, limit_hit, limit_hit_sync


def _login_windows(address: str, username: str) -> list[tuple]:
    return [(settings.LOGIN_FAILURES_PER_ADDRESS, "login-failures-address", address),
            (settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS, "login-failures-name", address,
             username_fold(username))]


def _login_refused(waits) -> None:
    waits = [wait for wait in waits if wait is not None]
    if waits:
        raise ApplicationError(ErrorCode.RATE_LIMITED, "Too many failed login attempts; try again later.",
                               retry_after=max(waits))


async def login_allowed(*, address: str, username: str) -> None:
    """Raise `rate_limited` if this address, or this name from this address, failed too often lately."""
    _login_refused(await asyncio.gather(*(limit_check(*window) for window in _login_windows(address, username))))


def login_allowed_sync(*, address: str, username: str) -> None:
    _login_refused([limit_check_sync(*window) for window in _login_windows(address, username)])


async def login_failed(*, address: str, username: str) -> None:
    """Count one failed login of `username` from `address`."""
    await asyncio.gather(*(limit_hit(*window) for window in _login_windows(address, username)))


def login_failed_sync(*, address: str, username: str) -> None:
    for window in _login_windows(address, username):
        limit_hit_sync(*window)


def registration_allowed_sync(*, address: str) -> None:
    """Count one registration attempt from `address`; raise `rate_limited` if there were too many."""
    wait = limit_hit_sync(settings.REGISTRATIONS_PER_ADDRESS, "registrations", address)
    if wait is not None:
        raise ApplicationError(ErrorCode.RATE_LIMITED, "Too many registrations from your address; try again later.",
                               retry_after=wait)


def password_reset_allowed_sync(*, address: str) -> None:
    """Count one password-reset request from `address`; raise `rate_limited` if there were too many."""
    wait = limit_hit_sync(settings.PASSWORD_RESETS_PER_ADDRESS, "password-resets", address)
    if wait is not None:
        raise ApplicationError(ErrorCode.RATE_LIMITED, "Too many password-reset requests from your address; try "
                                                       "again later.", retry_after=wait)
