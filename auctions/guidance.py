"""The price to win (auctions.rules.price_to_win) from what the scripts return: the session's
terms and the board's K-th score, read in the same atomic step as the bid or the standing, so that
no answer costs a second round trip."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from auctions.rules import cents_to_price, price_to_win


@dataclass(frozen=True, slots=True)
class Terms:
    """What a price to win needs of a session, as the scripts return it (strings)."""

    alpha: str
    beta: str
    gamma: str
    start_us: str
    upset_cents: str


def price_hint(terms: Terms, *, weight: float, now_us: int, open_now: bool, winning: bool, threshold: str,
               own_cents: int | None) -> Decimal | None:
    """The bidder's price to win now: None while winning and while the session takes no bids
    (`open_now`: Redis's clock within [start, effective end), not closed or settled). `threshold`
    is the K-th ranked score ("" while fewer than K bidders); a bidder not within the top K is not
    among those K, so it is also the K-th best score of their rivals, and so it is for a bidder
    with no bid (every bidder is a rival)."""
    if winning or not open_now:
        return None
    return price_to_win(
        alpha=float(terms.alpha), beta=float(terms.beta), gamma=float(terms.gamma), weight=weight,
        start_us=int(terms.start_us), at_us=now_us + settings.PRICE_HINT_MARGIN_MS * 1000,
        rival_score=float(threshold) if threshold else None,
        upset_price=cents_to_price(int(terms.upset_cents)),
        own_price=cents_to_price(own_cents) if own_cents is not None else None,
    )
