"""The pure rules, and the bid script held against them (hypothesis)."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auctions import live
from auctions.rules import InvalidPrice, RankedBid, bid_score, price_parse, ranking_order, settle
from core.redis import get_redis


@pytest.mark.parametrize("raw", [None, True, "abc", float("nan"), float("inf"), "NaN", "Infinity", -1, 0, "0",
                                 0.001, "0.001", 1e12, "1000000000.01", [], {}, "1e999999"])
def test_invalid_prices_are_refused(raw):
    with pytest.raises(InvalidPrice):
        price_parse(raw)


@pytest.mark.parametrize("raw,expected", [("123.45", "123.45"), (123.45, "123.45"), (7, "7.00"),
                                          ("1000000000", "1000000000.00"), ("0.01", "0.01"), ("5.5", "5.50"),
                                          (1e3, "1000.00")])
def test_valid_prices_are_normalised_to_cents(raw, expected):
    assert price_parse(raw) == Decimal(expected)


@pytest.mark.parametrize("raw,reason", [
    # The contract's price strings are plain ASCII decimals (the page's text box sends strings).
    ("1e3", "without an exponent"), ("+51", "without a sign"), ("-5", "without a sign"), (" 50", "spaces"),
    ("50 ", "spaces"), ("１２３", "digits 0-9"), ("12.345", "at most 2 decimals"), ("12.", "like 123.45"),
    (".5", "like 123.45"), ("", "must not be empty"), ("99999999999999", "must not exceed 1,000,000,000"),
    ("0", "greater than 0"), ("0.00", "greater than 0"), ("1" * 40, "must not exceed 1,000,000,000"),
    ("1" * 40 + "x", "like 123.45"),
])
def test_a_price_string_that_is_not_plain_decimal_text_is_refused_naming_why(raw, reason):
    with pytest.raises(InvalidPrice) as refused:
        price_parse(raw)
    assert reason in str(refused.value)


def _bid(bidder, price, score, seq):
    return RankedBid(bidder_id=bidder, price=Decimal(price), score=score, seq=seq)


def test_settlement_with_fewer_bidders_than_units_prices_at_the_last():
    outcome = settle([_bid("a", "10", 10.0, 1), _bid("b", "12", 12.0, 2)], inventory=5)
    assert [b.bidder_id for b in outcome.ranking] == ["b", "a"]
    assert outcome.winners == 2 and outcome.final_price == Decimal("10")


def test_settlement_without_bids_has_no_price():
    outcome = settle([], inventory=3)
    assert outcome.winners == 0 and outcome.final_price is None


def test_settlement_prices_at_the_kth_and_breaks_ties_by_seq():
    bids = [_bid("a", "10", 10.0, 3), _bid("b", "10", 10.0, 1), _bid("c", "30", 30.0, 2), _bid("d", "5", 5.0, 4)]
    outcome = settle(bids, inventory=2)
    assert [b.bidder_id for b in outcome.ranking] == ["c", "b", "a", "d"]
    assert outcome.winners == 2 and outcome.final_price == Decimal("10")


def test_no_winner_pays_more_than_their_bid_when_a_lower_price_ranks_higher():
    # b's weight puts its lower price above c's: the K-th ranked price (c's 30) would overcharge b.
    bids = [_bid("a", "40", 40.0, 1), _bid("b", "20", 35.0, 2), _bid("c", "30", 30.0, 3), _bid("d", "25", 25.0, 4)]
    outcome = settle(bids, inventory=3)
    assert [b.bidder_id for b in outcome.ranking[:outcome.winners]] == ["a", "b", "c"]
    assert outcome.final_price == Decimal("20")


bids_strategy = st.lists(
    st.tuples(st.integers(0, 7), st.integers(1, 100_000), st.sampled_from([0.5, 1.0, 1.5, 2.0])),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bids=bids_strategy, alpha=st.sampled_from([0.0, 1.0, 2.5]), beta=st.sampled_from([0.0, 10.0, 1e6]),
       gamma=st.sampled_from([0.0, 3.0]), inventory=st.integers(1, 5))
def test_the_bid_script_follows_the_pure_rules(bids, alpha, beta, gamma, inventory):
    """Scores to the bit, the not-higher rule, the ranking order and the threshold, against Redis."""
    client = get_redis()
    client.flushdb()
    session_id = "00000000-0000-0000-0000-00000000abcd"
    keys = live.session_keys(session_id)
    now_us = live.redis_clock_us()
    start_us = now_us - 3_000_000
    client.hset(keys.params, mapping={"start_us": start_us, "end_us": now_us + 3_600_000_000, "upset_cents": 1,
                                      "alpha": repr(alpha), "beta": repr(beta), "gamma": repr(gamma),
                                      "inventory": inventory, "epoch": "e"})
    client.hset(keys.meta, "epoch", "e")  # a whole live state (auctions.live)
    place = live.script(client, "place_bid")
    current: dict[str, RankedBid] = {}
    for bidder, cents, weight in bids:
        user_id = f"user-{bidder}"
        price = Decimal(cents) / 100
        reply = place(keys=[keys.params, keys.rank, keys.bids, keys.stream, keys.meta, keys.names,
                            live.rate_key(session_id, user_id), live.idem_key(session_id, user_id, None)],
                      args=[user_id, user_id, str(price), cents, repr(weight), 10_000, 600, 0])
        previous = current.get(user_id)
        if previous is not None and price <= previous.price:
            assert reply[:2] == ["err", "not_higher"]
            continue
        assert reply[0] == "ok"
        score = float(reply[1])
        assert score == bid_score(alpha=alpha, beta=beta, gamma=gamma, price=price, weight=weight,
                                  accepted_us=int(reply[6]), start_us=start_us)
        current[user_id] = RankedBid(bidder_id=user_id, price=price, score=score, seq=int(reply[5]))
        order = ranking_order(list(current.values()))
        assert int(reply[2]) == [b.bidder_id for b in order].index(user_id) + 1
        assert int(reply[3]) == len(order)
        expected_threshold = order[inventory - 1].score if len(order) >= inventory else None
        assert (float(reply[4]) if reply[4] else None) == expected_threshold
    members = client.zrevrange(keys.rank, 0, -1)
    assert [m.split(":", 1)[1] for m in members] == [b.bidder_id for b in ranking_order(list(current.values()))]


@settings(max_examples=300, deadline=None)
@given(board=st.lists(st.tuples(st.integers(1, 100_000), st.floats(0, 1e6, allow_nan=False)), max_size=30),
       inventory=st.integers(1, 10))
def test_no_winner_ever_pays_more_than_their_bid_and_the_price_is_a_winners(board, inventory):
    bids = [_bid(f"b{n}", f"{cents / 100:.2f}", score, n + 1) for n, (cents, score) in enumerate(board)]
    outcome = settle(bids, inventory=inventory)
    winners = outcome.ranking[:outcome.winners]
    assert outcome.winners == min(inventory, len(bids))
    if winners:
        assert all(bid.price >= outcome.final_price for bid in winners)
        assert outcome.final_price in {bid.price for bid in winners}
    else:
        assert outcome.final_price is None
