"""auctions.verification: the public log and its digest in the contract's canonical form (recomputed
here from the contract's words), and the independent audit, which catches a tampered row."""

import hashlib
import json
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from auctions import live, persistence, settlement
from auctions.models import BiddingSession, Ranking
from auctions.rules import to_us
from auctions.services import bid_place
from auctions.verification import session_audit
from tests import bidding, processes

pytestmark = pytest.mark.django_db(transaction=True)


def _settled_session(make_session, prices: dict[int, list[str]], *, inventory=2):
    """A session scored with price, time and weight (bidders' weights vary), bid, persisted and settled."""
    session = make_session(inventory=inventory, alpha=1.0, beta=50.0, gamma=3.0, starts_in=-1, lasts=3)
    users = bidding.bidders(len(prices))
    for n, user in enumerate(users):
        for price in prices[n]:
            async_to_sync(bid_place)(session_id=str(session.pk), user=user, price=Decimal(price))
    persistence.session_drain(session_id=str(session.pk))
    processes.wait_until(lambda: live.redis_clock_us() >= to_us(session.end_time), 10, interval=0.05,
                         message="the session ended")
    settlement.session_settle(session_id=str(session.pk))
    return BiddingSession.objects.get(pk=session.pk), users


def test_the_log_and_its_digest_follow_the_canonical_recipe(api, make_session):
    session, users = _settled_session(make_session, {0: ["20.00", "25.50"], 1: ["21.00"], 2: ["19.99"]})

    async def fetch():
        log = await api.get(f"/api/sessions/{session.pk}/log")
        results = await api.get(f"/api/sessions/{session.pk}/results")
        return log, results

    log, results = async_to_sync(fetch)()
    assert log.status_code == 200 and log.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in log.text.splitlines()]
    assert [entry["seq"] for entry in lines] == [1, 2, 3, 4]
    assert set(lines[0]) == {"seq", "user_id", "username", "price", "weight", "score", "accepted_at"}
    assert isinstance(lines[0]["price"], str) and isinstance(lines[0]["score"], float)
    # The recipe, from the contract's words: anyone can do this with the log alone.
    canonical = "".join(
        f"{e['seq']},{e['user_id']},{e['price']},{e['weight']!r},{e['score']!r},{e['accepted_at']}\n" for e in lines)
    assert results.json()["log_digest"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert lines[0]["accepted_at"].endswith("Z") and len(lines[0]["accepted_at"]) == 27


def test_the_log_of_a_session_not_settled_is_refused(api, make_session):
    session = make_session()
    response = async_to_sync(api.get)(f"/api/sessions/{session.pk}/log")
    assert response.status_code == 409 and response.json()["code"] == "not_settled"


def test_the_audit_agrees_with_an_honest_settlement_and_names_a_tampered_row(make_session, capsys):
    session, _ = _settled_session(make_session, {0: ["20.00", "25.50"], 1: ["21.00"], 2: ["19.99"]})
    assert session_audit(session_id=session.pk) is None
    call_command("audit_session", str(session.pk))
    assert BiddingSession.objects.get(pk=session.pk).audit_verified is True

    # Someone with database access raises the winner's stored price.
    winner = Ranking.objects.get(session=session, rank=1)
    Ranking.objects.filter(pk=winner.pk).update(price=winner.price + 1)
    with pytest.raises(SystemExit) as failed:
        call_command("audit_session", str(session.pk))
    assert failed.value.code == 1
    assert "rank 1" in capsys.readouterr().err
    assert BiddingSession.objects.get(pk=session.pk).audit_verified is False


def test_the_audit_names_a_logged_bid_the_rules_would_not_have_scored_so(make_session):
    from auctions.models import BidEvent

    session, _ = _settled_session(make_session, {0: ["20.00"], 1: ["21.00"]})
    BidEvent.objects.filter(session=session, seq=2).update(price=Decimal("22.00"))
    difference = session_audit(session_id=session.pk)
    assert difference is not None and difference.startswith("bid seq 2")


def test_the_log_pages_by_seq_range_through_gaps(make_session):
    """bid_log pages by seq ranges: every bid once and in order, whatever the page size, across a
    gap in the seqs (a lost bid) and one wider than a page."""
    from auctions.models import BidEvent
    from auctions.verification import bid_log

    session, _ = _settled_session(make_session, {0: ["20.00", "25.50", "26.00"], 1: ["21.00", "27.00"],
                                                 2: ["19.99", "28.00"]})
    events = BidEvent.objects.filter(session=session)
    expected = list(events.order_by("seq").values_list("seq", flat=True))
    assert expected == [1, 2, 3, 4, 5, 6, 7]
    for page in (1, 2, 3, 7, 5_000):
        assert [bid.seq for bid in bid_log(session.pk, page=page)] == expected
    # Gaps: seq 3 gone, 6 and 7 moved far beyond (as a re-sequenced bid may be).
    events.filter(seq=3).delete()
    events.filter(seq=7).update(seq=107)
    events.filter(seq=6).update(seq=50)
    for page in (1, 2, 3, 5_000):
        assert [bid.seq for bid in bid_log(session.pk, page=page)] == [1, 2, 4, 5, 50, 107]


def test_bids_saved_while_the_log_is_read_are_not_skipped(make_session):
    """A live session's export reads the log while bids are saved: those saved after a page was
    read come in the next ones, none skipped behind the page's range."""
    from auctions.models import BidEvent
    from auctions.verification import bid_log

    session, _ = _settled_session(make_session, {0: ["20.00", "25.50", "26.00"], 1: ["21.00", "27.00"],
                                                 2: ["19.99", "28.00", "29.00"]})
    events = BidEvent.objects.filter(session=session)
    later = list(events.filter(seq__gte=4).order_by("seq"))
    assert [e.seq for e in later] == [4, 5, 6, 7, 8]
    events.filter(seq__gte=4).delete()
    reading = bid_log(session.pk, page=5)
    first = [next(reading).seq for _ in range(3)]
    for event in later:  # saved after the first page was read
        event.pk = None
    BidEvent.objects.bulk_create(later)
    assert first + [bid.seq for bid in reading] == [1, 2, 3, 4, 5, 6, 7, 8]
