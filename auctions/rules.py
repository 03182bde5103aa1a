"""The auction's rules as pure functions: price validity, the score, the ranking order, the
settlement (winners and final price), a session's status at a moment, and the engine's clock unit
(microseconds since the epoch). No I/O. The bid script (lua/place_bid.lua) and the settlement
follow these, and tests hold both against them."""

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db.models import TextChoices

MAX_PRICE = Decimal("1000000000")
PRICE_QUANTUM = Decimal("0.01")
# Sorted-set members are "<MAX_SEQ - seq, zero-padded>:<user id>": among equal scores the
# greater member (the smaller seq, the earlier bid) comes first in ZREVRANGE.
MAX_SEQ = 10**15
SEQ_DIGITS = 16


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SessionStatus(TextChoices):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    ENDED = "ended"
    SETTLED = "settled"


def session_status(*, now, start, end, settled: bool) -> SessionStatus:
    """The lifecycle state at `now` (datetimes or microseconds, all alike): settled is final, the
    others follow from the clock. The bid script and push_claim.lua refuse and announce by the same
    comparisons (now < start: not started; now >= end: ended)."""
    if settled:
        return SessionStatus.SETTLED
    if now < start:
        return SessionStatus.SCHEDULED
    if now < end:
        return SessionStatus.ACTIVE
    return SessionStatus.ENDED


def end_after_bid(*, end_us: int, accepted_us: int, rank: int, inventory: int, window_s: int, by_s: int,
                  hard_end_us: int | None) -> int:
    """Soft close: the effective end after an accepted bid that ranks `rank` right after its
    acceptance. A bid within the top K accepted less than W seconds before the end moves the end
    to accepted + E, never past the hard end, never earlier (place_bid.lua does exactly this)."""
    if window_s <= 0 or rank > inventory or end_us - accepted_us >= window_s * 1_000_000:
        return end_us
    moved = accepted_us + by_s * 1_000_000
    if hard_end_us is not None:
        moved = min(moved, hard_end_us)
    return max(end_us, moved)


def end_after_reschedule(*, scheduled, effective, new_scheduled):
    """The effective end once an admin moves the scheduled end: the new scheduled end, or the end
    that soft-close extensions reached if that is later (an extension is never undone)."""
    extended = effective if effective > scheduled else None
    return max(new_scheduled, extended) if extended is not None else new_scheduled


def us_to_datetime(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def to_us(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class InvalidPrice(ValueError):
    pass


# A price string: ASCII digits, an optional point and at most 2 decimals ("123", "123.4", "123.45").
_PRICE_TEXT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")
_PRICE_TEXT_DECIMALS = re.compile(r"[0-9]+\.[0-9]{3,}")


def _price_text_problem(text: str) -> str:
    """Why a price string is not plain decimal text, in the words the 422 detail uses."""
    if not text:
        return "price must not be empty"
    if any(c.isspace() for c in text):
        return "price must not contain spaces"
    if text[0] in "+-":
        return "price must be written without a sign"
    if "e" in text.lower() and any(c.isdigit() for c in text):
        return "price must be written without an exponent (like 1000, not 1e3)"
    if any(c.isdigit() and not c.isascii() for c in text):
        return "price must use the digits 0-9"
    if _PRICE_TEXT_DECIMALS.fullmatch(text):
        return "price must have at most 2 decimals"
    return "price must be a number like 123.45"


def price_parse(value: object) -> Decimal:
    """A bid price from JSON input: a finite number, or a string of ASCII digits with an optional
    point and at most 2 decimals (no sign, exponent, spaces or other digits); > 0, at most
    1,000,000,000. Raises InvalidPrice naming the exact reason otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidPrice("price must be a number like 123.45")
    if isinstance(value, str):
        if not _PRICE_TEXT.fullmatch(value[:64]):
            raise InvalidPrice(_price_text_problem(value[:64]))
        if len(value) > 32:  # plain digits, far too many of them
            raise InvalidPrice("price must not exceed 1,000,000,000")
        text = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPrice("price must be a finite number")
        text = repr(value)
    else:
        text = str(value)
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise InvalidPrice("price must be a number like 123.45") from None
    if not price.is_finite():
        raise InvalidPrice("price must be a finite number")
    if price <= 0:
        raise InvalidPrice("price must be greater than 0")
    if price > MAX_PRICE:
        raise InvalidPrice("price must not exceed 1,000,000,000")
    if price != price.quantize(PRICE_QUANTUM):
        raise InvalidPrice("price must have at most 2 decimals")
    return price.quantize(PRICE_QUANTUM)


def price_to_cents(price: Decimal) -> int:
    return int(price * 100)


def cents_to_price(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(PRICE_QUANTUM)


def bid_score(*, alpha: float, beta: float, gamma: float, price: Decimal | float, weight: float,
              accepted_us: int, start_us: int) -> float:
    """score = alpha * price + beta / (T + 1) + gamma * weight, T in seconds since the start.

    Evaluated in the same order and precision as the bid script, so the two agree to the bit."""
    elapsed = (accepted_us - start_us) / 1_000_000
    return alpha * float(price) + beta / (elapsed + 1) + gamma * weight


def price_to_win(*, alpha: float, beta: float, gamma: float, weight: float, start_us: int, at_us: int,
                 rival_score: float | None, upset_price: Decimal, own_price: Decimal | None) -> Decimal | None:
    """The lowest price (whole cents, >= the upset price, > the bidder's own) whose bid, accepted
    at `at_us`, would rank within the top K against the board as it stands: its score must beat
    `rival_score`, the K-th best score among the *other* bidders, strictly (a tie goes to the
    earlier bid, theirs); None for rival_score means fewer than K rivals, any valid price wins.
    None when no price up to MAX_PRICE would do (alpha = 0 and the rest of the score falls short).

    Exact to the bit: each candidate is scored with `bid_score`, the bid script's arithmetic, and
    the score never decreases as the price grows, so a search over cents, narrowed from the closed
    form, finds the least."""
    floor = max(upset_price, own_price + PRICE_QUANTUM) if own_price is not None else upset_price
    low, high = price_to_cents(floor), price_to_cents(MAX_PRICE)
    if low > high:
        return None

    def wins(cents: int) -> bool:
        # The price as cents / 100: Python divides two integers correctly rounded, so that is the
        # double nearest the price, float(cents_to_price(cents)) and Lua's tonumber("123.45"),
        # without a Decimal per evaluation (this runs for every accepted bid outside the top K:
        # its answer's price to win).
        score = bid_score(alpha=alpha, beta=beta, gamma=gamma, price=cents / 100, weight=weight, accepted_us=at_us,
                          start_us=start_us)
        return rival_score is None or score > rival_score

    if not wins(high):
        return None
    if rival_score is not None and alpha > 0:
        # Start from the closed form (exact but for rounding) and narrow to it: a few evaluations
        # instead of the ~37 of a search over every cent (the `you` frames compute many of these).
        rest = bid_score(alpha=0.0, beta=beta, gamma=gamma, price=0.0, weight=weight, accepted_us=at_us,
                         start_us=start_us)
        estimate = (rival_score - rest) / alpha * 100
        guess = min(max(math.ceil(estimate), low), high) if math.isfinite(estimate) else low
        if wins(guess):
            high = guess
            if guess - 2 >= low and not wins(guess - 2):
                low = guess - 1
        else:
            low = guess + 1
            if guess + 2 <= high and wins(guess + 2):
                high = guess + 2
    while low < high:
        middle = (low + high) // 2
        if wins(middle):
            high = middle
        else:
            low = middle + 1
    return cents_to_price(low)


def rank_member(*, seq: int, user_id: str) -> str:
    return f"{MAX_SEQ - seq:0{SEQ_DIGITS}d}:{user_id}"


@dataclass(frozen=True, slots=True)
class RankedBid:
    bidder_id: str
    price: Decimal
    score: float
    seq: int


def ranking_order(bids: list[RankedBid]) -> list[RankedBid]:
    """Higher score first; equal scores: the earlier accepted bid (smaller seq) first."""
    return sorted(bids, key=lambda bid: (-bid.score, bid.seq))


@dataclass(frozen=True, slots=True)
class Settlement:
    ranking: list[RankedBid]
    winners: int
    final_price: Decimal | None


def settle(bids: list[RankedBid], *, inventory: int) -> Settlement:
    """Winners are the first min(K, bidders); every winner pays one final price, the lowest price
    among the winners, so no winner pays more than they bid (the ranking is by score, so the K-th
    ranked bid's price may exceed a higher-ranked winner's own); no bids, no price."""
    ranking = ranking_order(bids)
    winners = min(inventory, len(ranking))
    final_price = min(bid.price for bid in ranking[:winners]) if winners else None
    return Settlement(ranking=ranking, winners=winners, final_price=final_price)
