"""A session bid through the real bid service and settled by the real settlement, for the tests of
what follows a settlement (the result mail)."""

from decimal import Decimal

from asgiref.sync import async_to_sync

from auctions import live, persistence, settlement
from auctions.models import BiddingSession, Ranking
from auctions.rules import to_us
from auctions.services import bid_place
from tests import bidding, processes

# Prices of bidders 0..4 (score = price: alpha 1, beta and gamma 0), then bidder 1 raises to 31.50.
# With K=3, bidders 1, 3 and 4 win (rank 1: 31.50, 2: 25.00, 3: 22.10 = the final price); 0 and 2 lose.
PRICES = ["20.00", "30.00", "21.00", "25.00", "22.10"]
RAISE = (1, "31.50")
FINAL_PRICE = "22.10"


def bid_and_end(make_session):
    """A session of 3 units with the bids above, persisted, once its end has passed by Redis's
    clock; returns (session, winners' addresses in rank order, losers' addresses)."""
    session = make_session(inventory=3, alpha=1.0, beta=0.0, gamma=0.0, starts_in=-1, lasts=2.5)
    users = bidding.bidders(len(PRICES))
    for user, price in [*zip(users, PRICES, strict=True), (users[RAISE[0]], RAISE[1])]:
        async_to_sync(bid_place)(session_id=str(session.pk), user=user, price=Decimal(price))
    persistence.session_drain(session_id=str(session.pk))
    processes.wait_until(lambda: live.redis_clock_us() >= to_us(session.end_time), 10, interval=0.05,
                         message="the session ended")
    addresses = [f"{u.username}@example.test" for u in users]
    winners = [addresses[n] for n in (1, 3, 4)]
    return session, winners, sorted(set(addresses) - set(winners))


def bid_and_settle(make_session):
    """bid_and_end, then settled in this process (its after-commit tasks go to the broker)."""
    session, winners, losers = bid_and_end(make_session)
    assert settlement.session_settle(session_id=str(session.pk)) is not None
    session = BiddingSession.objects.select_related("product").get(pk=session.pk)
    emails = dict(Ranking.objects.filter(session=session, is_winner=True)
                  .values_list("rank", "bidder__email"))
    assert [emails[rank] for rank in sorted(emails)] == winners
    return session, winners, losers
