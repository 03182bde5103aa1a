"""Which API routes are Redis-only (served by flashbid.handlers.RedisOnlyHandler, without Django's
per-request thread machinery). Each app marks its own routes where it declares them:

    @router.post(redis_only("/sessions/{uuid:session_id}/bids"), ...)

A route may be marked only if its view is async and, once warm, touches nothing but Redis (no
sync middleware, no ORM, no sync signal receiver); its rare cold paths reach the ORM only through
core.db.orm. Paths are relative to the API's mount point, like the routers' own."""

import re
from collections.abc import Callable

from django.urls.converters import get_converters

_paths: list[str] = []
# A path parameter: {type:name} or {name}.
_PARAMETER = re.compile(r"\{(?:(\w+):)?(\w+)\}")


def redis_only(path: str) -> str:
    """Mark `path` (a router path, e.g. "/sessions/{uuid:session_id}/leaderboard") Redis-only; returns it."""
    if path not in _paths:
        _paths.append(path)
    return path


def redis_only_pattern(prefix: str) -> re.Pattern:
    """One regex matching every marked path under `prefix` (e.g. "/api"); a path parameter
    matches one path segment."""
    alternatives = [_PARAMETER.sub("[^/]+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
                    for path in _paths]
    return re.compile(re.escape(prefix) + "(?:" + "|".join(alternatives or ["(?!)"]) + ")")


def route_matcher(prefix: str, path: str) -> Callable[[str], dict | None]:
    """A function of a request path: the parameters of `prefix` + the router path `path` in it,
    converted, as Django's URL resolver would match and convert them (each `{type:name}` with its
    converter's regex and `to_python`, Django's `uuid` matching lowercase hex only; `{name}` a
    `str`), or None where the resolver would not match."""
    converters = get_converters()
    parts, types, end = [], {}, 0
    for match in _PARAMETER.finditer(path):
        types[match[2]] = converters[match[1] or "str"]
        parts += [re.escape(path[end:match.start()]), f"(?P<{match[2]}>{types[match[2]].regex})"]
        end = match.end()
    pattern = re.compile(re.escape(prefix) + "".join(parts) + re.escape(path[end:]))

    def parameters(request_path: str) -> dict | None:
        found = pattern.fullmatch(request_path)
        if found is None:
            return None
        try:
            return {name: types[name].to_python(value) for name, value in found.groupdict().items()}
        except ValueError:  # the resolver's "no match" too
            return None

    return parameters
