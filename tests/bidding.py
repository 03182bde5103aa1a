"""Test helpers for the write-behind and the settlement: many bidders, bids placed through the real
service (auctions.services.bid_place, one Lua script each), and the comparisons that prove
PostgreSQL holds what Redis accepted."""

import asyncio
import threading
import uuid
from decimal import Decimal

from asgiref.sync import async_to_sync

from accounts.user_cache import CurrentUser
from auctions import live, recovery
from auctions.models import Bid, BidEvent, Ranking
from auctions.rules import RankedBid, cents_to_price, settle, to_us
from auctions.services import BidResult, bid_place
from core.exceptions import ApplicationError
from core.redis import get_redis


def bidders(count: int, *, weight: float | None = None) -> list[CurrentUser]:
    """`count` users in PostgreSQL (one bulk insert), as the bid service sees them. Weights vary
    (1.0 .. 2.9) unless `weight` is given."""
    from accounts.models import User

    tag = uuid.uuid4().hex[:8]
    users = [User(username=f"b{tag}{n}", email=f"b{tag}{n}@example.test", password="!",
                  weight=weight if weight is not None else 1.0 + (n % 20) / 10)
             for n in range(count)]
    User.objects.bulk_create(users, batch_size=2_000)
    return [CurrentUser(id=str(u.pk), username=u.username, weight=u.weight, is_admin=False, is_active=True,
                        token_version=0, session_hash="") for u in users]


def place(session_id, plan: list[tuple[CurrentUser, list[str]]], concurrency: int = 64) -> tuple[
        list[BidResult], list[str]]:
    """Place every bidder's prices, in order per bidder, all bidders concurrently. Returns the
    accepted replies and the rejection codes."""
    return place_in_sessions({session_id: plan}, concurrency=concurrency)[session_id]


def place_in_sessions(plans: dict, concurrency: int = 64) -> dict:
    """`place` for several sessions at once ({session id: plan}), all concurrently. Returns
    {session id: (accepted replies, rejection codes)}."""
    for session_id in plans:
        recovery.live_state_ensure(session_id=session_id)  # after this the bid path needs no SQL

    async def run():
        outcomes = {session_id: ([], []) for session_id in plans}
        gate = asyncio.Semaphore(concurrency)

        async def one_bidder(session_id, user: CurrentUser, prices: list[str]):
            accepted, rejected = outcomes[session_id]
            for price in prices:
                async with gate:
                    try:
                        accepted.append(await bid_place(session_id=str(session_id), user=user,
                                                        price=Decimal(price)))
                    except ApplicationError as exc:
                        rejected.append(exc.code)

        await asyncio.gather(*(one_bidder(session_id, user, prices)
                               for session_id, plan in plans.items() for user, prices in plan))
        return outcomes

    return async_to_sync(run)()


def latest_per_bidder(accepted: list[BidResult]) -> dict[str, BidResult]:
    latest: dict[str, BidResult] = {}
    for reply in accepted:
        if reply.user_id not in latest or reply.seq > latest[reply.user_id].seq:
            latest[reply.user_id] = reply
    return latest


def redis_bids(session_id) -> dict[str, tuple[Decimal, int, float, int]]:
    """The live bids hash: user id -> (price, seq, score, accepted_us)."""
    out = {}
    for user_id, value in get_redis().hgetall(live.session_keys(session_id).bids).items():
        cents, seq, score, accepted_us, _member = value.split("|", 4)
        out[user_id] = (cents_to_price(int(cents)), int(seq), float(score), int(accepted_us))
    return out


def postgres_bids(session_id) -> dict[str, tuple[Decimal, int, float, int]]:
    return {str(b.bidder_id): (b.price, b.seq, b.score, to_us(b.accepted_at))
            for b in Bid.objects.filter(session_id=session_id)}


def mismatch(session_id, accepted: list[BidResult]) -> str:
    """'' when PostgreSQL equals Redis and the replies: one Bid per bidder with the latest price,
    score, seq and acceptance time; one BidEvent per accepted bid, seqs 1..N, each equal to its
    reply. Otherwise a short description of the first difference (for wait_until messages)."""
    live = redis_bids(session_id)
    stored = postgres_bids(session_id)
    if stored != live:
        missing = len(set(live) - set(stored))
        differ = sum(1 for k in live if k in stored and stored[k] != live[k])
        return f"Bid rows: {len(stored)} stored vs {len(live)} live, {missing} missing, {differ} differ"
    latest = latest_per_bidder(accepted)
    from_replies = {u: (r.price, r.seq, r.score, to_us(r.accepted_at)) for u, r in latest.items()}
    if live != from_replies:
        return "the Redis bids hash differs from the accepted replies"
    events = list(BidEvent.objects.filter(session_id=session_id).values_list(
        "seq", "bidder_id", "price", "score", "accepted_at"))
    if len(events) != len(accepted):
        return f"BidEvent rows: {len(events)} of {len(accepted)}"
    by_seq = {seq: (str(bidder), price, score, to_us(at)) for seq, bidder, price, score, at in events}
    if sorted(by_seq) != list(range(1, len(accepted) + 1)):
        return "BidEvent seqs are not 1..N"
    expected = {r.seq: (r.user_id, r.price, r.score, to_us(r.accepted_at)) for r in accepted}
    if by_seq != expected:
        return "BidEvent rows differ from the accepted replies"
    return ""


def expected_settlement(accepted: list[BidResult], inventory: int):
    """The settlement computed independently, by the pure rules, from the accepted replies."""
    bids = [RankedBid(bidder_id=r.user_id, price=r.price, score=r.score, seq=r.seq)
            for r in latest_per_bidder(accepted).values()]
    return settle(bids, inventory=inventory)


def assert_settled_as_expected(session, accepted: list[BidResult]) -> None:
    session.refresh_from_db()
    expected = expected_settlement(accepted, session.inventory)
    assert session.status == "settled"
    assert session.settled_at is not None
    assert session.final_price == expected.final_price
    rows = list(Ranking.objects.filter(session=session).order_by("rank").values_list(
        "rank", "bidder_id", "price", "score", "seq", "is_winner"))
    assert [r[0] for r in rows] == list(range(1, len(expected.ranking) + 1))
    assert [(str(b), p, s, q, w) for _, b, p, s, q, w in rows] == [
        (bid.bidder_id, bid.price, bid.score, bid.seq, rank <= expected.winners)
        for rank, bid in enumerate(expected.ranking, start=1)]
    assert sum(1 for r in rows if r[5]) == expected.winners <= session.inventory
    # The live leaderboard's order is the settled order.
    live_order = [m.split(":", 1)[1] for m in get_redis().zrevrange(live.session_keys(session.pk).rank, 0, -1)]
    assert live_order == [bid.bidder_id for bid in expected.ranking]


def at_once(work, times: int = 2, timeout: float = 60) -> list:
    """`work()` in `times` threads released together (as that many worker processes would run it
    at the same moment); their results in the order they finished. Each thread gives its database
    connection back. Raises the first thread's exception, if any."""
    barrier = threading.Barrier(times)
    results, errors = [], []

    def run():
        from django.db import connection

        try:
            barrier.wait()
            results.append(work())
        except Exception as exc:  # noqa: BLE001 - raised below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert len(results) == times, f"{times - len(results)} of {times} threads did not finish in {timeout} s"
    return results
