"""The API's error vocabulary: one exception, stable machine codes, one body shape, and the input
types whose violations the API answers with 422 `invalid`."""

from enum import StrEnum
from typing import Annotated

from ninja import Schema
from pydantic import AfterValidator


class ErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    BAD_CREDENTIALS = "bad_credentials"
    USERNAME_TAKEN = "username_taken"
    EMAIL_TAKEN = "email_taken"
    RATE_LIMITED = "rate_limited"
    SESSION_NOT_STARTED = "session_not_started"
    SESSION_ENDED = "session_ended"
    SESSION_NOT_ENDED = "session_not_ended"
    NOT_HIGHER = "not_higher"
    INVALID_PRICE = "invalid_price"
    BELOW_UPSET_PRICE = "below_upset_price"
    NO_BID = "no_bid"
    NOT_SETTLED = "not_settled"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAVAILABLE = "unavailable"


class ApiError(Exception):
    """Raised by services and handlers; rendered as {"detail", "code"} with `status`."""

    def __init__(self, status: int, code: ErrorCode, detail: str, *, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict:
        return {"detail": self.detail, "code": str(self.code)}


class ErrorOut(Schema):
    """The body of every 4xx answer."""

    detail: str
    code: str


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL; left to the database it is a 500, not a 422.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


Text = Annotated[str, AfterValidator(_storable)]
"""A string input that PostgreSQL can store or compare against: every free-text field of the API."""
