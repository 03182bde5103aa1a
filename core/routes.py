"""Which API routes are Redis-only (served by flashbid.handlers.RedisOnlyHandler, without Django's
per-request thread machinery). Each app marks its own routes where it declares them:

    @router.post(redis_only("/sessions/{uuid:session_id}/bids"), ...)

A route may be marked only if its view is async and, once warm, touches nothing but Redis (no
sync middleware, no ORM, no sync signal receiver); its rare cold paths reach the ORM only through
core.db.orm. Paths are relative to the API's mount point, like the routers' own."""

import re

from django.urls.converters import get_converters

_paths: list[str] = []
_CONVERTER = re.compile(r"\{(?:\w+:)?\w+\}")


def redis_only(path: str) -> str:
    """Mark `path` (a router path, e.g. "/sessions/{uuid:session_id}/leaderboard") Redis-only; returns it."""
    if path not in _paths:
        _paths.append(path)
    return path


def redis_only_pattern(prefix: str) -> re.Pattern:
    """One regex matching every marked path under `prefix` (e.g. "/api"); a path parameter
    matches one path segment."""
    alternatives = [_CONVERTER.sub("[^/]+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
                    for path in _paths]
    return re.compile(re.escape(prefix) + "(?:" + "|".join(alternatives or ["(?!)"]) + ")")


_PARAMETER = re.compile(r"\{(?:(\w+):)?(\w+)\}")


def route_pattern(prefix: str, path: str) -> re.Pattern:
    """A regex matching `prefix` + the router path `path` exactly as Django's URL resolver would:
    each `{type:name}` parameter becomes a named group with the converter's own regex (Django's
    `uuid` converter: lowercase hex only), `{name}` a `str` one."""
    converters = get_converters()
    parts, end = [], 0
    for match in _PARAMETER.finditer(path):
        parts += [re.escape(path[end:match.start()]),
                  f"(?P<{match[2]}>{converters[match[1] or 'str'].regex})"]
        end = match.end()
    return re.compile(re.escape(prefix) + "".join(parts) + re.escape(path[end:]))
