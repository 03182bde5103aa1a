"""JSON out of the API: orjson, decimals as strings ("123.45"), times as UTC ISO-8601 with Z."""

from decimal import Decimal

import orjson
from django.http import HttpResponse

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(data) -> bytes:
    return orjson.dumps(data, default=_default, option=_OPTIONS)


def json_response(data, *, status: int = 200, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(dumps(data), status=status, content_type="application/json", headers=headers)
