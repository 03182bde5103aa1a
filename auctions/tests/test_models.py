import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from auctions.models import Bid, BiddingSession, BidEvent, Product, Ranking

pytestmark = pytest.mark.django_db


def _session_kwargs(**overrides):
    start = timezone.now()
    kwargs = dict(product=Product.objects.create(name="p"), upset_price=Decimal("1.00"), inventory=1,
                  alpha=1.0, beta=0.0, gamma=0.0, start_time=start, end_time=start + dt.timedelta(hours=1))
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize("overrides", [
    {"upset_price": Decimal("0")},
    {"upset_price": Decimal("-1")},
    {"inventory": 0},
    {"alpha": -0.1},
    {"beta": -1},
    {"gamma": -1},
    {"end_time": timezone.now() - dt.timedelta(days=1)},
    {"status": "settled"},  # settled without settled_at
    {"final_price": Decimal("0")},
])
def test_session_invariants_are_database_constraints(overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        BiddingSession.objects.create(**_session_kwargs(**overrides))


def test_valid_session_is_stored():
    session = BiddingSession.objects.create(**_session_kwargs())
    assert session.current_status(timezone.now()) == "active"


def test_one_current_bid_per_bidder_and_session(make_user):
    user = make_user()
    session = BiddingSession.objects.create(**_session_kwargs())
    Bid.objects.create(session=session, bidder=user, price=Decimal("2"), score=2.0, seq=1, accepted_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        Bid.objects.create(session=session, bidder=user, price=Decimal("3"), score=3.0, seq=2,
                           accepted_at=timezone.now())


def test_bid_event_sequence_is_unique_per_session(make_user):
    user = make_user()
    session = BiddingSession.objects.create(**_session_kwargs())
    fields = dict(session=session, bidder=user, price=Decimal("2"), score=2.0, weight=1.0, accepted_at=timezone.now())
    BidEvent.objects.create(seq=1, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        BidEvent.objects.create(seq=1, **fields)


def test_ranking_rank_and_bidder_are_unique_per_session(make_user):
    a, b = make_user(), make_user()
    session = BiddingSession.objects.create(**_session_kwargs())
    row = dict(session=session, price=Decimal("2"), score=2.0, seq=1, is_winner=True)
    Ranking.objects.create(bidder=a, rank=1, **row)
    with pytest.raises(IntegrityError), transaction.atomic():
        Ranking.objects.create(bidder=b, rank=1, **row)
    with pytest.raises(IntegrityError), transaction.atomic():
        Ranking.objects.create(bidder=a, rank=2, **row)


def test_negative_or_zero_prices_are_refused(make_user):
    user = make_user()
    session = BiddingSession.objects.create(**_session_kwargs())
    with pytest.raises(IntegrityError), transaction.atomic():
        Bid.objects.create(session=session, bidder=user, price=Decimal("0"), score=0.0, seq=1,
                           accepted_at=timezone.now())
