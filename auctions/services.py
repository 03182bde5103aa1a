"""Auction writes: placing a bid (the hot path), creating products and sessions, the rules of a
session's terms and of editing them."""

import datetime as dt
import io
import time
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Annotated

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydantic import WithJsonSchema

from accounts.user_cache import CurrentUser
from auctions import live, recovery
from auctions.guidance import Terms, price_hint
from auctions.models import BiddingSession, Product, ProductPicture, SessionStatus
from auctions.rules import MAX_PRICE, PRICE_QUANTUM, price_to_cents, us_to_datetime
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
# Each outcome's counter, looked up once, not by `labels()` (a lock and a dict) on every bid.
_OUTCOMES = {outcome: BIDS.labels(outcome) for outcome in ("accepted", *_REJECTIONS)}

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
    # The lowest price that would be winning now (auctions.guidance); null while winning.
    price_to_win: Decimal | None
    version: int = field(metadata=_INTERNAL)
    replayed: bool = field(metadata=_INTERNAL)
    # The effective end after this bid, and whether this bid moved it (soft close).
    end_us: int = field(metadata=_INTERNAL)
    extended: bool = field(metadata=_INTERNAL)

    def body(self) -> dict:
        return {name: getattr(self, name) for name in BID_BODY_FIELDS}


BID_BODY_FIELDS = tuple(f.name for f in fields(BidResult) if not f.metadata.get("internal"))


async def bid_place(*, session_id: str, user: CurrentUser, price: Decimal,
                    idempotency_key: str | None = None) -> BidResult:
    """Place a bid: one EVALSHA, no SQL while the session's live state is whole in Redis.

    Raises ApplicationError with the contract's codes for every rejection."""
    started = time.perf_counter()
    session_id = str(session_id)  # once, not once per key
    script_keys, args = live.place_bid_call(
        session_id, user_id=user.id, username=user.username, price=str(price), cents=price_to_cents(price),
        weight=user.weight, rate_limit=settings.BID_RATE_LIMIT_PER_SECOND,
        idem_ttl=settings.IDEMPOTENCY_TTL_SECONDS, idempotency_key=idempotency_key)
    reply = await recovery.run_when_whole(live.async_script("place_bid"), keys=script_keys, args=args,
                                          session_id=session_id)
    if reply[0] == "err":
        code = reply[1]
        error_code, detail = _REJECTIONS[code]
        _OUTCOMES[code].inc()
        retry_after = max(1, -(-int(reply[2]) // 1000)) if code == "rate_limited" else None
        extra = _not_higher_hint(reply, user) if code == "not_higher" else None
        raise ApplicationError(error_code, detail, retry_after=retry_after, extra=extra)
    if len(reply) == 10:  # a replay of a reply stored before soft close existed (at most IDEMPOTENCY_TTL ago)
        reply = [*reply, "0", "0"]
    (_, score, rank, total, threshold, seq, accepted_us, version, winning, replayed, end_us, extended,
     *terms) = reply
    _OUTCOMES["accepted"].inc()
    BID_LATENCY.observe(time.perf_counter() - started)
    return BidResult(
        session_id=session_id,
        user_id=user.id,
        price=price,
        score=float(score),
        rank=int(rank),
        total_bidders=int(total),
        threshold_score=float(threshold) if threshold else None,
        is_winning=winning == "1",
        seq=int(seq),
        accepted_at=us_to_datetime(int(accepted_us)),
        price_to_win=price_hint(Terms(*terms), weight=user.weight, now_us=int(accepted_us), open_now=True,
                                winning=winning == "1", threshold=threshold, own_cents=price_to_cents(price))
        if terms else None,
        version=int(version),
        replayed=bool(int(replayed)),
        end_us=int(end_us),
        extended=extended == "1",
    )


def _not_higher_hint(reply: list, user: CurrentUser) -> dict:
    """The `price_to_win` of a `not_higher` refusal (place_bid.lua returns what it needs)."""
    rank, threshold, own_cents, alpha, beta, gamma, start_us, upset_cents, now_us, inventory = reply[3:13]
    # Refused after the window and floor checks: the session takes bids now.
    hint = price_hint(Terms(alpha, beta, gamma, start_us, upset_cents), weight=user.weight, now_us=int(now_us),
                      open_now=True, winning=int(rank) <= int(inventory), threshold=threshold,
                      own_cents=int(own_cents))
    return {"price_to_win": hint}


def product_create(*, name: str, description: str = "") -> Product:
    name = name.strip()
    if not name:
        raise ApplicationError(ErrorCode.INVALID, "name: must not be empty.", field="name")
    return Product.objects.create(name=name, description=description)


# A product picture: at most this many bytes uploaded, this many pixels a side once stored.
PICTURE_MAX_BYTES = 5 * 1024 * 1024
PICTURE_MAX_SIDE = 1200
# Pillow refuses to decode more pixels than this (a small file can claim a huge image).
PICTURE_MAX_PIXELS = 40_000_000


def picture_encode(upload) -> bytes:
    """A picture upload (a file object) as it is stored and served: decoded by Pillow (so only a
    real PNG, JPEG, GIF or WebP image passes, never a script dressed as one), scaled to at most
    PICTURE_MAX_SIDE a side and re-encoded as WebP. Raises `invalid` saying why a file is refused."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    data = upload.read(PICTURE_MAX_BYTES + 1)
    if len(data) > PICTURE_MAX_BYTES:
        raise ApplicationError(ErrorCode.INVALID, f"picture: at most {PICTURE_MAX_BYTES // 1024 // 1024} MB.",
                               field="picture")
    Image.MAX_IMAGE_PIXELS = PICTURE_MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "GIF", "WEBP"]) as image:
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ApplicationError(ErrorCode.INVALID, "picture: not a PNG, JPEG, GIF or WebP image.",
                               field="picture") from None
    image.thumbnail((PICTURE_MAX_SIDE, PICTURE_MAX_SIDE))
    stored = io.BytesIO()
    image.save(stored, format="WEBP", quality=82)
    return stored.getvalue()


@transaction.atomic
def product_picture_set(*, product: Product, picture: bytes | None) -> None:
    """Store an encoded picture (picture_encode), or remove it (None)."""
    if picture is None:
        ProductPicture.objects.filter(product=product).delete()
    else:
        ProductPicture.objects.update_or_create(product=product, defaults={"data": picture,
                                                                          "content_type": "image/webp"})
    product.picture_updated_at = timezone.now() if picture is not None else None
    product.save(update_fields=["picture_updated_at"])


# Upper bounds of a session's terms: far beyond any real auction, low enough that every number
# stays exact in the engine's doubles and microseconds.
MAX_INVENTORY = 1_000_000
MAX_WEIGHT = 1e9
# Soft close: a window or an extension longer than a day is a typo, not an auction rule.
MAX_EXTEND_SECONDS = 86_400
# The fields of a session's terms: what an admin sets and bidders bid under.
SESSION_TERMS = ("product", "upset_price", "inventory", "alpha", "beta", "gamma", "start_time",
                 "scheduled_end_time", "extend_window_seconds", "extend_by_seconds", "hard_end_time")


class SessionTermsInvalid(ApplicationError):
    """`invalid` terms, each problem kept with the field it is about (`problems`: (field, words)),
    so that a form shows it next to that field; the detail names them all."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__(ErrorCode.INVALID, "; ".join(f"{name}: {words}" for name, words in problems) + ".",
                         field=problems[0][0] if len(problems) == 1 else None)


def _whole_seconds_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number of seconds"
    if not 0 <= value <= MAX_EXTEND_SECONDS:
        return f"must be between 0 and {MAX_EXTEND_SECONDS:,} seconds (a day)"
    return None


def session_validate(*, upset_price: Decimal, inventory: int, alpha: float, beta: float, gamma: float,
                     start_time: dt.datetime, end_time: dt.datetime, extend_window_seconds: int = 0,
                     extend_by_seconds: int = 0, hard_end_time: dt.datetime | None = None) -> None:
    """A session's terms, checked in words before the database's own constraints would refuse them
    by name. `end_time` is the scheduled end (the effective end starts there). The API, the create
    command and the admin's form all check through here; raises SessionTermsInvalid."""
    problems = []
    if not upset_price.is_finite() or upset_price <= 0 or upset_price > MAX_PRICE:
        problems.append(("upset_price", "must be greater than 0 and at most 1,000,000,000"))
    elif upset_price != upset_price.quantize(PRICE_QUANTUM):
        problems.append(("upset_price", "must have at most 2 decimals"))
    if isinstance(inventory, bool) or not isinstance(inventory, int) or not 1 <= inventory <= MAX_INVENTORY:
        problems.append(("inventory", f"must be a whole number of units between 1 and {MAX_INVENTORY:,}"))
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not (0 <= value <= MAX_WEIGHT):  # also refuses NaN
            problems.append((name, "must be between 0 and 1e9"))
    times = {"start_time": start_time, "end_time": end_time, "hard_end_time": hard_end_time}
    naive = [name for name, moment in times.items() if moment is not None and moment.tzinfo is None]
    for name in naive:
        problems.append((name, "needs a time zone (e.g. 2026-01-01T12:00:00Z)"))
    if not naive and end_time <= start_time:
        problems.append(("end_time", "must be after start_time"))
    for name, value in (("extend_window_seconds", extend_window_seconds), ("extend_by_seconds", extend_by_seconds)):
        if problem := _whole_seconds_problem(value):
            problems.append((name, problem))
    if extend_window_seconds and not extend_by_seconds:
        problems.append(("extend_by_seconds", "must be at least 1 second when extend_window_seconds is set "
                                              "(a bid in the window moves the end that far past it)"))
    if hard_end_time is not None and not naive and hard_end_time <= end_time:
        problems.append(("hard_end_time", "must be after the scheduled end (end_time): extensions stop there"))
    if problems:
        raise SessionTermsInvalid(problems)


def session_edit_check(*, session: BiddingSession, changed: set[str], scheduled_end_time: dt.datetime,
                       now: dt.datetime) -> None:
    """What an edit of an existing session may change, by its state at `now` (the state as the API
    tells it, rules.session_status): every term before the start; once bidding has started only a
    later scheduled end, until the effective end passes (the bids already placed were scored and
    ranked under the terms, and bidders bid under the soft-close rule); nothing once it has ended
    (its settlement is due) or is settled. Raises `invalid` saying why."""
    terms = changed & set(SESSION_TERMS)
    if not terms:
        return
    status = session.current_status(now)
    if status == SessionStatus.SETTLED:
        raise ApplicationError(ErrorCode.INVALID, "Settled: this session is a record; nothing of it changes "
                                                  "any more.")
    if status == SessionStatus.ENDED:
        raise ApplicationError(ErrorCode.INVALID, "Ended: bidding is over and the settlement is due; the "
                                                  "session can no longer change.")
    if status == SessionStatus.ACTIVE:
        fixed = sorted(terms - {"scheduled_end_time"})
        if fixed:
            raise ApplicationError(ErrorCode.INVALID, "Bidding has started: the scoring terms are fixed "
                                                      f"(cannot change {', '.join(fixed)}); only the scheduled "
                                                      "end can move later.", field=fixed[0])
        if scheduled_end_time < session.scheduled_end_time:
            raise ApplicationError(ErrorCode.INVALID, "Bidding has started: the scheduled end can move later, "
                                                      "not earlier.", field="scheduled_end_time")


@transaction.atomic
def session_create(*, product_id: int, upset_price: Decimal, inventory: int, alpha: float, beta: float,
                   gamma: float, start_time: dt.datetime, end_time: dt.datetime, extend_window_seconds: int = 0,
                   extend_by_seconds: int = 0, hard_end_time: dt.datetime | None = None,
                   created_by_id: str | None = None) -> BiddingSession:
    """A new session; `end_time` is its scheduled end (the effective end starts there)."""
    terms = {"extend_window_seconds": extend_window_seconds, "extend_by_seconds": extend_by_seconds,
             "hard_end_time": hard_end_time}
    session_validate(upset_price=upset_price, inventory=inventory, alpha=alpha, beta=beta, gamma=gamma,
                     start_time=start_time, end_time=end_time, **terms)
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise ApplicationError(ErrorCode.INVALID, "product_id: no such product.", field="product_id")
    return BiddingSession.objects.create(
        product=product, upset_price=upset_price, inventory=inventory, alpha=alpha, beta=beta,
        gamma=gamma, start_time=start_time, end_time=end_time, scheduled_end_time=end_time,
        created_by_id=created_by_id, **terms,
    )
