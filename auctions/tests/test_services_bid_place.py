"""bid_place (auctions.services), the bid path end to end through real HTTP requests on the ASGI app,
real Redis, real PostgreSQL: ranks and scores under concurrency, ties, the end, no SQL when warm,
idempotent retries."""

import asyncio
import datetime as dt
import random
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async

from auctions import live
from auctions.rules import RankedBid, bid_score, ranking_order, to_us
from core.redis import get_redis
from tests.assertions import bids_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


async def test_concurrent_bids_rank_exactly_as_an_independent_recomputation(api, make_session, users, auth_header):
    session = await sync_to_async(make_session)(alpha=1.0, beta=50.0, gamma=2.0, inventory=10)
    bidders = await sync_to_async(users)(100)
    for i, user in enumerate(bidders):
        user.weight = 0.5 + (i % 7) / 4
        await user.asave(update_fields=["weight"])
    headers = {str(u.pk): auth_header(u) for u in bidders}
    rng = random.Random(7)
    # 500 bids, 5 per bidder, at random prices: some are not higher than the bidder's own last.
    plan = [(str(u.pk), Decimal(rng.randint(1000, 5000)) / 100) for u in bidders for _ in range(5)]
    rng.shuffle(plan)

    async def place(user_id, price):
        return user_id, price, await api.post(bids_url(session), json={"price": str(price)}, headers=headers[user_id])

    replies = await asyncio.gather(*(place(u, p) for u, p in plan))
    assert all(r.status_code in (201, 409) for _, _, r in replies), {r.status_code for _, _, r in replies}
    accepted = [(u, p, r.json()) for u, p, r in replies if r.status_code == 201]
    assert all(r.json()["code"] == "not_higher" for _, _, r in replies if r.status_code == 409)

    start_us = to_us(session.start_time)
    weights = {str(u.pk): u.weight for u in bidders}
    latest: dict[str, dict] = {}
    for user_id, price, body in accepted:
        assert Decimal(body["price"]) == price
        accepted_us = to_us(dt.datetime.fromisoformat(body["accepted_at"]))
        expected = bid_score(alpha=1.0, beta=50.0, gamma=2.0, price=price, weight=weights[user_id],
                             accepted_us=accepted_us, start_us=start_us)
        assert body["score"] == expected
        if user_id not in latest or body["seq"] > latest[user_id]["seq"]:
            latest[user_id] = body
    order = ranking_order([RankedBid(bidder_id=u, price=Decimal(b["price"]), score=b["score"], seq=b["seq"])
                           for u, b in latest.items()])

    board = (await api.get(f"/api/sessions/{session.pk}/leaderboard?page_size=200")).json()
    assert board["total_bidders"] == len(latest) == 100
    assert [e["user_id"] for e in board["entries"]] == [b.bidder_id for b in order]
    assert [e["score"] for e in board["entries"]] == [b.score for b in order]
    assert len({e["user_id"] for e in board["entries"]}) == len(board["entries"])
    assert board["threshold_score"] == order[9].score
    assert board["highest_price"] == str(max(Decimal(b["price"]) for b in latest.values()))
    # Each accepted reply's rank was the rank of that bid at its moment: a bid's final rank can only
    # be worse or equal (later bids may overtake it), and every bidder's last reply has a seq the
    # board agrees with.
    final_rank = {e["user_id"]: e["rank"] for e in board["entries"]}
    for user_id, body in latest.items():
        assert 1 <= body["rank"] <= final_rank[user_id] <= 100
    seqs = sorted(b["seq"] for _, _, b in accepted)
    assert seqs == list(range(1, len(accepted) + 1))


async def test_equal_scores_rank_the_earlier_bid_first(api, make_session, users, auth_header):
    session = await sync_to_async(make_session)(beta=0.0, gamma=1.0, inventory=1)
    first, second = await sync_to_async(users)(2, weight=1.0)
    r1 = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(first))
    r2 = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(second))
    assert r1.json()["score"] == r2.json()["score"]
    assert (r1.json()["rank"], r2.json()["rank"]) == (1, 2)
    assert r2.json()["is_winning"] is False
    board = (await api.get(f"/api/sessions/{session.pk}/leaderboard")).json()
    assert [e["user_id"] for e in board["entries"]] == [str(first.pk), str(second.pk)]
    assert [e["is_winner"] for e in board["entries"]] == [True, False]


async def test_no_bid_is_accepted_at_or_after_the_end(api, make_session, users, auth_header, settings):
    settings.BID_RATE_LIMIT_PER_SECOND = 1000
    session = await sync_to_async(make_session)(starts_in=-5, lasts=6.5)
    bidders = await sync_to_async(users)(20)
    end_us = to_us(session.end_time)
    prices = {str(u.pk): 10.0 for u in bidders}
    seen_ended = False
    outcomes = []

    async def hammer(user):
        nonlocal seen_ended
        while not seen_ended:
            prices[str(user.pk)] += 0.01
            price = f"{prices[str(user.pk)]:.2f}"
            r = await api.post(bids_url(session), json={"price": price}, headers=auth_header(user))
            outcomes.append(r)
            if r.status_code == 409 and r.json()["code"] == "session_ended":
                seen_ended = True

    await asyncio.wait_for(asyncio.gather(*(hammer(u) for u in bidders)), timeout=30)
    accepted = [r.json() for r in outcomes if r.status_code == 201]
    assert accepted, "no bid was accepted before the end"
    assert all(to_us(dt.datetime.fromisoformat(b["accepted_at"])) < end_us for b in accepted)
    ended = [r for r in outcomes if r.status_code == 409]
    assert ended and all(r.json()["code"] == "session_ended" for r in ended)
    # and the board holds exactly the accepted bids
    stream_len = get_redis().xlen(live.session_keys(session.pk).stream)
    assert stream_len == len(accepted)


def test_warm_bid_runs_no_sql_in_any_thread(make_session, users, auth_header, executed_sql,
                                            django_assert_num_queries):
    from flashbid.asgi import application

    session = make_session()
    (user,) = users(1)
    headers = auth_header(user)

    async def post(price: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.post(bids_url(session), json={"price": price}, headers=headers)

    assert async_to_sync(post)("11.00").status_code == 201  # cold: loads params and the user

    executed_sql.clear()
    with django_assert_num_queries(0):
        response = async_to_sync(post)("12.00")
    assert response.status_code == 201
    assert executed_sql == []
    # the counter does see SQL run by the app's threads (a cold path would show here)
    async_to_sync(sync_to_async(lambda: list(type(session).objects.filter(pk=session.pk))))()
    assert len(executed_sql) == 1


async def test_a_retry_with_the_same_idempotency_key_places_nothing_new(api, make_session, users, auth_header):
    session = await sync_to_async(make_session)()
    (user,) = await sync_to_async(users)(1)
    headers = {**auth_header(user), "Idempotency-Key": "order-42"}
    first = await api.post(bids_url(session), json={"price": "15.00"}, headers=headers)
    again = await api.post(bids_url(session), json={"price": "15.00"}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert get_redis().xlen(live.session_keys(session.pk).stream) == 1
    other = await api.post(bids_url(session), json={"price": "16.00"},
                           headers={**auth_header(user), "Idempotency-Key": "order-43"})
    assert other.status_code == 201 and other.json()["seq"] == 2
