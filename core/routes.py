"""Which API routes are Redis-only (served by flashbid.handlers.RedisOnlyHandler, without Django's
per-request thread machinery). Each app marks its own routes where it declares them:

    @router.post(redis_only("/sessions/{uuid:session_id}/bids"), ...)

A route may be marked only if its view is async and, once warm, touches nothing but Redis (no
sync middleware, no ORM, no sync signal receiver); its rare cold paths reach the ORM only through
core.db.orm. Paths are relative to the API's mount point, like the routers' own."""

import re

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
