"""ORM calls from async code, done like a short request.

`orm(fn, ...)` runs `fn` in Django's sync thread (sync_to_async, thread-sensitive) and, before
and after, does what a request's start and end do for the database (close_old_connections): with
the native pool the connection goes back to the pool, behind PgBouncer it is kept or dropped by
CONN_MAX_AGE. Async views served without Django's request signals (flashbid.handlers) use it for
their rare cold paths; in ordinary requests it costs nothing extra."""

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def _as_request(fn, *args, **kwargs):
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def orm(fn, /, *args, **kwargs):
    return await sync_to_async(_as_request)(fn, *args, **kwargs)
