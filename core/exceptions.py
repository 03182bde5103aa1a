"""The error vocabulary: stable machine codes and the one exception that carries them.

Domain code (services, selectors, settlement, persistence, the live state) raises
`ApplicationError(code, detail)`: a code and a human sentence, never an HTTP status. The API's
edge (flashbid/api.py, `STATUS_OF_CODE`) is the one place that maps a code to a status and the
contract's {"detail", "code"} body; pages, consumers and commands read the code."""

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
    RECOVERING = "recovering"
    HAS_BIDS = "has_bids"


class ApplicationError(Exception):
    """A refusal with a stable code. `field` names the input it is about (forms put the message
    next to that field); `retry_after` (seconds) says when trying again makes sense; `extra` adds
    fields the contract names for that refusal to the body (e.g. `price_to_win` of `not_higher`)."""

    def __init__(self, code: ErrorCode, detail: str, *, field: str | None = None, retry_after: int | None = None,
                 extra: dict | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.retry_after = retry_after
        self.extra = extra

    def body(self) -> dict:
        body = {"detail": self.detail, "code": str(self.code)}
        if self.extra:
            body.update(self.extra)
        return body


class ErrorOut(Schema):
    """The body of every error answer."""

    detail: str
    code: str


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL; left to the database it is a 500, not a 422.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


Text = Annotated[str, AfterValidator(_storable)]
"""A string input that PostgreSQL can store or compare against: every free-text field of the API."""
