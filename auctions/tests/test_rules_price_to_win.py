"""The price to win (auctions.rules.price_to_win), property-tested: bidding exactly that price,
accepted any time within the margin, ranks within the top K on an unchanged board; one cent less,
accepted at the margin's end, does not (unless it is not a valid bid at all)."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from auctions.rules import MAX_PRICE, PRICE_QUANTUM, RankedBid, bid_score, cents_to_price, price_to_win, ranking_order

START_US = 1_700_000_000_000_000
prices = st.integers(1, 10_000_00).map(lambda cents: Decimal(cents) / 100)


def _rank_of_new_bid(rivals: list[float], score: float) -> int:
    """The new bid's rank among the rivals' scores: they all came earlier (smaller seq)."""
    board = [RankedBid(bidder_id=f"r{i}", price=Decimal(1), score=s, seq=i + 1) for i, s in enumerate(rivals)]
    board.append(RankedBid(bidder_id="me", price=Decimal(1), score=score, seq=len(rivals) + 1))
    return [b.bidder_id for b in ranking_order(board)].index("me") + 1


@settings(max_examples=400, deadline=None)
@given(alpha=st.sampled_from([0.5, 1.0, 2.5, 0.013]), beta=st.sampled_from([0.0, 10.0, 1e6]),
       gamma=st.sampled_from([0.0, 1.0, 50.0]), weight=st.floats(0, 5, allow_nan=False),
       rival_prices=st.lists(prices, min_size=0, max_size=12), inventory=st.integers(1, 5),
       elapsed_s=st.floats(0, 3600, allow_nan=False), margin_ms=st.integers(0, 5_000),
       upset=prices, own=st.none() | prices, accepted_within=st.floats(0, 1))
def test_bidding_the_price_to_win_ranks_within_k_and_a_cent_less_does_not(
        alpha, beta, gamma, weight, rival_prices, inventory, elapsed_s, margin_ms, upset, own, accepted_within):
    now_us = START_US + int(elapsed_s * 1_000_000)
    at_us = now_us + margin_ms * 1000
    # The rivals bid before now, at random earlier moments, each with weight 1.
    rivals = [bid_score(alpha=alpha, beta=beta, gamma=gamma, price=p, weight=1.0,
                        accepted_us=START_US + (now_us - START_US) * i // (len(rival_prices) + 1), start_us=START_US)
              for i, p in enumerate(rival_prices)]
    kth = sorted(rivals, reverse=True)[inventory - 1] if len(rivals) >= inventory else None
    hint = price_to_win(alpha=alpha, beta=beta, gamma=gamma, weight=weight, start_us=START_US, at_us=at_us,
                        rival_score=kth, upset_price=upset, own_price=own)

    def score(price: Decimal, accepted_us: int) -> float:
        return bid_score(alpha=alpha, beta=beta, gamma=gamma, price=price, weight=weight, accepted_us=accepted_us,
                         start_us=START_US)

    floor = max(upset, own + PRICE_QUANTUM) if own is not None else upset
    assert hint is not None  # alpha > 0: some price up to the maximum always wins these boards
    assert hint >= floor and hint == hint.quantize(PRICE_QUANTUM) and hint <= MAX_PRICE
    accepted_us = now_us + int((at_us - now_us) * accepted_within)  # any moment within the margin
    assert _rank_of_new_bid(rivals, score(hint, accepted_us)) <= inventory
    if kth is None:
        assert hint == floor  # fewer than K rivals: any valid bid wins
    less = hint - PRICE_QUANTUM
    if less >= floor:
        assert _rank_of_new_bid(rivals, score(less, at_us)) > inventory


def test_without_a_price_term_the_hint_is_the_floor_or_none():
    common = dict(alpha=0.0, beta=0.0, gamma=1.0, start_us=START_US, at_us=START_US, upset_price=Decimal("10.00"),
                  own_price=None)
    assert price_to_win(weight=2.0, rival_score=1.5, **common) == Decimal("10.00")  # already beats it
    assert price_to_win(weight=1.0, rival_score=1.5, **common) is None  # no price can


def test_the_hint_is_above_the_bidders_own_price():
    assert price_to_win(alpha=1.0, beta=0.0, gamma=0.0, weight=1.0, start_us=START_US, at_us=START_US,
                        rival_score=None, upset_price=Decimal("10.00"), own_price=Decimal("12.34")) == Decimal("12.35")
    # Beating a rival's 50.00 strictly: 50.01.
    assert price_to_win(alpha=1.0, beta=0.0, gamma=0.0, weight=1.0, start_us=START_US, at_us=START_US,
                        rival_score=50.0, upset_price=Decimal("10.00"), own_price=None) == Decimal("50.01")


@settings(max_examples=2000, deadline=None)
@given(cents=st.integers(1, int(MAX_PRICE * 100)))
def test_a_price_in_cents_over_100_is_the_same_double_as_the_price(cents):
    """price_to_win scores cents / 100 where bid_score takes float(price): the same double."""
    assert cents / 100 == float(cents_to_price(cents)) == float(str(cents_to_price(cents)))
