"""Auction writes: placing a bid (the hot path), creating products and sessions."""

import datetime as dt
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from accounts.selectors import CurrentUser
from auctions import engine
from auctions.models import Bid, BiddingSession, BidEvent, Product
from auctions.rules import price_to_cents, rank_member
from flashbid.db import orm
from flashbid.errors import ApiError, ErrorCode
from flashbid.metrics import BID_LATENCY, BIDS
from flashbid.redis import get_redis

_REJECTIONS = {
    "not_found": (404, ErrorCode.NOT_FOUND, "No such session."),
    "session_not_started": (409, ErrorCode.SESSION_NOT_STARTED, "The session has not started yet."),
    "session_ended": (409, ErrorCode.SESSION_ENDED, "The session has ended."),
    "not_higher": (409, ErrorCode.NOT_HIGHER, "A new bid must be higher than your current bid."),
    "below_upset_price": (422, ErrorCode.BELOW_UPSET_PRICE, "The price is below the session's upset price."),
    "rate_limited": (429, ErrorCode.RATE_LIMITED, "Too many bids; slow down."),
}


@dataclass(frozen=True, slots=True)
class BidResult:
    session_id: str
    user_id: str
    price: Decimal
    score: float
    rank: int
    total_bidders: int
    threshold_score: float | None
    is_winning: bool
    seq: int
    accepted_at: dt.datetime
    version: int
    replayed: bool


async def bid_place(*, session_id: str, user: CurrentUser, price: Decimal,
                    idempotency_key: str | None = None) -> BidResult:
    """Place a bid: one EVALSHA, no SQL once the session's parameters are in Redis.

    Raises ApiError with the contract's codes for every rejection."""
    started = time.perf_counter()
    script_keys, args = engine.place_bid_call(
        session_id, user_id=user.id, username=user.username, price=str(price), cents=price_to_cents(price),
        weight=user.weight, rate_limit=settings.BID_RATE_LIMIT_PER_SECOND,
        idem_ttl=settings.IDEMPOTENCY_TTL_SECONDS, idempotency_key=idempotency_key)
    place = engine.async_script("place_bid")
    reply = await place(keys=script_keys, args=args)
    if reply[0] == "err" and reply[1] == "no_params":
        await orm(engine.params_load, session_id)
        reply = await place(keys=script_keys, args=args)
    if reply[0] == "err":
        code = reply[1]
        BIDS.labels(code).inc()
        status, error_code, detail = _REJECTIONS[code]
        headers = {}
        if code == "rate_limited":
            headers["Retry-After"] = str(max(1, -(-int(reply[2]) // 1000)))
        raise ApiError(status, error_code, detail, headers=headers)
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
        accepted_at=engine.us_to_datetime(int(accepted_us)),
        version=int(version),
        replayed=bool(int(replayed)),
    )


def product_create(*, name: str, description: str = "") -> Product:
    name = name.strip()
    if not name:
        raise ApiError(422, ErrorCode.INVALID, "name: must not be empty.")
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
        raise ApiError(422, ErrorCode.INVALID, "; ".join(problems) + ".")


@transaction.atomic
def session_create(*, product_id: int, upset_price: Decimal, inventory: int, alpha: float, beta: float,
                   gamma: float, start_time: dt.datetime, end_time: dt.datetime,
                   created_by_id: str | None = None) -> BiddingSession:
    session_validate(upset_price=upset_price, inventory=inventory, alpha=alpha, beta=beta, gamma=gamma,
                     start_time=start_time, end_time=end_time)
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise ApiError(422, ErrorCode.INVALID, "product_id: no such product.")
    return BiddingSession.objects.create(
        product=product, upset_price=upset_price, inventory=inventory, alpha=alpha, beta=beta,
        gamma=gamma, start_time=start_time, end_time=end_time, created_by_id=created_by_id,
    )


def leaderboard_rebuild(*, session_id) -> int:
    """Rebuild a session's live Redis state (params, ranking, bids, names, meta) from PostgreSQL,
    e.g. after Redis lost its data. Returns the number of bidders restored.

    Bids accepted but not yet persisted when Redis lost them cannot be restored from here: that
    window is what Redis's AOF (appendfsync everysec) covers."""
    session = BiddingSession.objects.filter(pk=session_id).first()
    if session is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, "No such session.")
    keys = engine.session_keys(session.pk)
    bids = list(Bid.objects.filter(session=session).select_related("bidder"))
    last_seq = max([b.seq for b in bids] + list(BidEvent.objects.filter(session=session)
                                                 .values_list("seq", flat=True).order_by("-seq")[:1]) + [0])
    client = get_redis()
    version = int(client.hget(keys.meta, "ver") or 0)
    pipe = client.pipeline()
    pipe.delete(keys.rank, keys.bids, keys.names, keys.meta)
    engine.params_store(session, pipe=pipe)
    for bid in bids:
        user_id = str(bid.bidder_id)
        member = rank_member(seq=bid.seq, user_id=user_id)
        score_text = repr(bid.score)
        pipe.zadd(keys.rank, {member: score_text})
        pipe.hset(keys.bids, user_id, f"{price_to_cents(bid.price)}|{bid.seq}|{score_text}|"
                                      f"{engine.to_us(bid.accepted_at)}|{member}")
        pipe.hset(keys.names, user_id, bid.bidder.username)
    highest = max((price_to_cents(b.price) for b in bids), default=0)
    pipe.hset(keys.meta, mapping={"seq": last_seq, "ver": max(version, last_seq) + 1, "hi": highest})
    pipe.execute()
    return len(bids)
