"""auctions.exports and the admin export endpoint: CSV, header first, streamed in constant memory."""

import csv
import io
import tracemalloc
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from auctions import exports
from core.streaming import in_batches
from tests import bidding

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_admin_exports_the_bids_as_csv_and_refuses_the_ranking_before_settlement(api, make_session,
                                                                                   make_user, auth_header):
    from auctions.services import bid_place

    session = make_session()
    users = bidding.bidders(2)
    for user, price in zip(users, ("20.00", "21.50"), strict=True):
        async_to_sync(bid_place)(session_id=str(session.pk), user=user, price=Decimal(price))
    from auctions import persistence

    persistence.session_drain(session_id=str(session.pk))
    admin = auth_header(make_user(is_staff=True))
    base = f"/api/admin/sessions/{session.pk}/export"

    bids = async_to_sync(api.get)(f"{base}?what=bids", headers=admin)
    ranking = async_to_sync(api.get)(f"{base}?what=ranking", headers=admin)
    neither = async_to_sync(api.get)(f"{base}?what=everything", headers=admin)
    bidder = async_to_sync(api.get)(f"{base}?what=bids", headers=auth_header(make_user()))

    assert bids.status_code == 200 and bids.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(bids.text)))
    assert rows[0] == ["seq", "user_id", "username", "price", "weight", "score", "accepted_at"]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [("1", users[0].id, "20.00"), ("2", users[1].id, "21.50")]
    assert ranking.status_code == 409 and ranking.json()["code"] == "not_settled"
    assert neither.status_code == 422 and bidder.status_code == 403


def _fill(session, users, count: int) -> None:
    """`count` logged bids spread over `users`, in bulk."""
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO auctions_bidevent (session_id, bidder_id, seq, price, score, weight, accepted_at, persisted_at)
            SELECT %s, (%s::uuid[])[1 + (n %% 1000)], n, 10 + n / 100.0, 10 + n / 100.0, 1.0, now(), now()
            FROM generate_series(1, %s) AS n""", [session.pk, [u.id for u in users], count])


def _streamed(session) -> tuple[int, int, int]:
    """(rows, bytes, peak traced memory) of streaming the session's bids CSV as the API does."""
    async def drain() -> tuple[int, int]:
        rows = size = 0
        async for line in in_batches(exports.bids_csv(session.pk)):
            rows, size = rows + 1, size + len(line)
        return rows, size

    tracemalloc.start()
    rows, size = async_to_sync(drain)()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return rows, size, peak


def test_100000_bids_stream_in_constant_memory(make_session):
    users = bidding.bidders(1_000)
    small, large = make_session(), make_session()
    _fill(small, users, 20_000)
    _fill(large, users, 100_000)

    small_rows, _, small_peak = _streamed(small)
    large_rows, large_size, large_peak = _streamed(large)

    assert (small_rows, large_rows) == (20_001, 100_001)  # the header and every bid
    # Five times the rows, the same memory: a page of rows (5,000) and a batch of lines at a time,
    # a few MB, where the whole ~10 MB CSV held as Python objects would take several times that.
    assert large_peak < 1.3 * small_peak, (small_peak, large_peak)
    assert large_peak < large_size, (large_size, large_peak)
