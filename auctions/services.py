"""Auction writes: placing a bid (the hot path), creating products and sessions."""

import datetime as dt
import time
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Annotated

from django.conf import settings
from django.db import transaction
from pydantic import WithJsonSchema

from accounts.user_cache import CurrentUser
from auctions import live, recovery
from auctions.models import BiddingSession, Product
from auctions.rules import price_to_cents, us_to_datetime
from core.exceptions import ApplicationError, ErrorCode
from core.metrics import BID_LATENCY, BIDS

_REJECTIONS = {
    "not_found": (ErrorCode.NOT_FOUND, "No such session."),
    "session_not_started": (ErrorCode.SESSION_NOT_STARTED, "The session has not started yet."),
    "session_ended": (ErrorCode.SESSION_ENDED, "The session has ended."),
    "not_higher": (ErrorCode.NOT_HIGHER, "A new bid must be higher than your current bid."),
    "below_upset_price": (ErrorCode.BELOW_UPSET_PRICE, "The price is below the session's upset price."),
    "rate_limited": (ErrorCode.RATE_LIMITED, "Too many bids; slow down."),
}

Uuid = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]
# Fields of BidResult that are not part of the answer's body.
_INTERNAL = {"internal": True}


@dataclass(frozen=True, slots=True)
class BidResult:
    """An accepted bid: the service's result, the answer's body (`body()`) and, through
    auctions.api.BidOut, its OpenAPI schema. The pages read the same body from the API."""

    session_id: Uuid
    user_id: Uuid
    price: Decimal
    score: float
    rank: int
    total_bidders: int
    threshold_score: float | None
    is_winning: bool
    seq: int
    accepted_at: dt.datetime
    version: int = field(metadata=_INTERNAL)
    replayed: bool = field(metadata=_INTERNAL)

    def body(self) -> dict:
        return {name: getattr(self, name) for name in BID_BODY_FIELDS}


BID_BODY_FIELDS = tuple(f.name for f in fields(BidResult) if not f.metadata.get("internal"))


async def bid_place(*, session_id: str, user: CurrentUser, price: Decimal,
                    idempotency_key: str | None = None) -> BidResult:
    """Place a bid: one EVALSHA, no SQL while the session's live state is whole in Redis.

    Raises ApplicationError with the contract's codes for every rejection."""
    started = time.perf_counter()
    script_keys, args = live.place_bid_call(
        session_id, user_id=user.id, username=user.username, price=str(price), cents=price_to_cents(price),
        weight=user.weight, rate_limit=settings.BID_RATE_LIMIT_PER_SECOND,
        idem_ttl=settings.IDEMPOTENCY_TTL_SECONDS, idempotency_key=idempotency_key)
    reply = await recovery.run_when_whole(live.async_script("place_bid"), keys=script_keys, args=args,
                                          session_id=session_id)
    if reply[0] == "err":
        code = reply[1]
        BIDS.labels(code).inc()
        error_code, detail = _REJECTIONS[code]
        retry_after = max(1, -(-int(reply[2]) // 1000)) if code == "rate_limited" else None
        raise ApplicationError(error_code, detail, retry_after=retry_after)
    _, score, rank, total, threshold, seq, accepted_us, version, winning, replayed = reply
    BIDS.labels("accepted").inc()
    BID_LATENCY.observe(time.perf_counter() - started)
    return BidResult(
        session_id=str(session_id),
        user_id=user.id,
        price=price,
        score=float(score),
        rank=int(rank),
        total_bidders=int(total),
        threshold_score=float(threshold) if threshold else None,
        is_winning=winning == "1",
        seq=int(seq),
        accepted_at=us_to_datetime(int(accepted_us)),
        version=int(version),
        replayed=bool(int(replayed)),
    )


def product_create(*, name: str, description: str = "") -> Product:
    name = name.strip()
    if not name:
        raise ApplicationError(ErrorCode.INVALID, "name: must not be empty.", field="name")
    return Product.objects.create(name=name, description=description)


def session_validate(*, upset_price: Decimal, inventory: int, alpha: float, beta: float, gamma: float,
                     start_time: dt.datetime, end_time: dt.datetime) -> None:
    """The session invariants, checked before the database's own constraints would refuse them."""
    problems = []
    if not upset_price.is_finite() or upset_price <= 0 or upset_price > Decimal("1000000000"):
        problems.append("upset_price must be > 0 and at most 1,000,000,000")
    elif upset_price != upset_price.quantize(Decimal("0.01")):
        problems.append("upset_price must have at most 2 decimals")
    if inventory < 1 or inventory > 1_000_000:
        problems.append("inventory must be between 1 and 1,000,000")
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not (0 <= value <= 1e9):
            problems.append(f"{name} must be between 0 and 1e9")
    if start_time.tzinfo is None or end_time.tzinfo is None:
        problems.append("start_time and end_time need a time zone (e.g. 2026-01-01T12:00:00Z)")
    elif end_time <= start_time:
        problems.append("end_time must be after start_time")
    if problems:
        raise ApplicationError(ErrorCode.INVALID, "; ".join(problems) + ".")


@transaction.atomic
def session_create(*, product_id: int, upset_price: Decimal, inventory: int, alpha: float, beta: float,
                   gamma: float, start_time: dt.datetime, end_time: dt.datetime,
                   created_by_id: str | None = None) -> BiddingSession:
    session_validate(upset_price=upset_price, inventory=inventory, alpha=alpha, beta=beta, gamma=gamma,
                     start_time=start_time, end_time=end_time)
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise ApplicationError(ErrorCode.INVALID, "product_id: no such product.", field="product_id")
    return BiddingSession.objects.create(
        product=product, upset_price=upset_price, inventory=inventory, alpha=alpha, beta=beta,
        gamma=gamma, start_time=start_time, end_time=end_time, created_by_id=created_by_id,
    )
