"""The live read model over Redis: board pages, the tiny meta, one bidder's standing.

Every read is one round trip to one Lua script that returns a consistent snapshot (version and
rows from the same instant) in O(log N + page size)."""

import functools
import math
import threading
from dataclasses import dataclass

from cachetools import TTLCache
from django.conf import settings

from accounts.user_cache import CurrentUser
from auctions import live, recovery
from auctions.guidance import Terms, price_hint
from auctions.rules import cents_to_price, session_status, us_to_datetime
from core.exceptions import ApplicationError, ErrorCode


@dataclass(frozen=True, slots=True)
class Board:
    session_id: str
    status: str
    version: int
    inventory: int
    total_bidders: int
    threshold_score: float | None
    highest_price: object
    start_time: object
    end_time: object
    server_time: object
    entries: list[dict]


def _not_found() -> ApplicationError:
    return ApplicationError(ErrorCode.NOT_FOUND, "No such session.")


async def _run(name: str, keys: list[str], args: list, session_id) -> list:
    """Run a read script, restoring the session's live state first if it is not whole."""
    reply = await recovery.run_when_whole(live.async_script(name), keys=keys, args=args, session_id=session_id)
    if reply[0] == "err" and reply[1] == "not_found":
        raise _not_found()
    return reply


async def board_read(*, session_id, offset: int, count: int) -> Board:
    keys = live.session_keys(session_id)
    reply = await _run("board_page", [keys.params, keys.rank, keys.bids, keys.names, keys.meta],
                       [offset, count], session_id)
    _, now_us, start_us, end_us, settled, inventory, version, total, threshold, highest, rows = reply
    rank = offset
    entries = []
    inventory = int(inventory)
    for i in range(0, len(rows), 4):
        rank += 1
        entries.append({
            "rank": rank,
            "user_id": rows[i],
            "username": rows[i + 1],
            "price": cents_to_price(int(rows[i + 2])),
            "score": float(rows[i + 3]),
            "is_winner": rank <= inventory,
        })
    highest = int(highest)
    return Board(
        session_id=str(session_id),
        status=session_status(now=int(now_us), start=int(start_us), end=int(end_us), settled=settled == "1"),
        version=int(version),
        inventory=inventory,
        total_bidders=int(total),
        threshold_score=float(threshold) if threshold else None,
        highest_price=cents_to_price(highest) if highest else None,
        start_time=us_to_datetime(int(start_us)),
        end_time=us_to_datetime(int(end_us)),
        server_time=us_to_datetime(int(now_us)),
        entries=entries,
    )


async def leaderboard_page(*, session_id, page: int, page_size: int) -> dict:
    board = await board_read(session_id=session_id, offset=(page - 1) * page_size, count=page_size)
    return board_page_body(board, page=page, page_size=page_size)


def board_page_body(board: Board, *, page: int, page_size: int) -> dict:
    """The body of GET /api/sessions/{id}/leaderboard for a board read at `(page - 1) * page_size`."""
    return {
        "session_id": board.session_id,
        "status": board.status,
        "version": board.version,
        "inventory": board.inventory,
        "total_bidders": board.total_bidders,
        "threshold_score": board.threshold_score,
        "highest_price": board.highest_price,
        "page": page,
        "page_size": page_size,
        "total_pages": max(1, math.ceil(board.total_bidders / page_size)),
        "entries": board.entries,
    }


_meta_cache: TTLCache = TTLCache(maxsize=10_000, ttl=settings.LEADERBOARD_META_CACHE_SECONDS)
_meta_lock = threading.Lock()


async def leaderboard_meta(*, session_id) -> dict:
    """The tiny poll target; cached in-process for at most LEADERBOARD_META_CACHE_SECONDS."""
    cache_key = str(session_id)
    with _meta_lock:
        cached = _meta_cache.get(cache_key)
    if cached is not None:
        return cached
    board = await board_read(session_id=session_id, offset=0, count=0)
    meta = {
        "version": board.version,
        "status": board.status,
        "total_bidders": board.total_bidders,
        "threshold_score": board.threshold_score,
        "highest_price": board.highest_price,
        "end_time": board.end_time,
        "server_time": board.server_time,
    }
    with _meta_lock:
        _meta_cache[cache_key] = meta
    return meta


class Standing:
    """One bidder's place on the live board (rank None without a bid) and their price to win,
    computed when first asked for (the `you` frames need it only for the bidders told anything)."""

    __slots__ = ("price", "score", "rank", "is_winning", "server_time", "_hint")

    def __init__(self, *, price, score, rank, is_winning, server_time, hint) -> None:
        self.price, self.score, self.rank, self.is_winning = price, score, rank, is_winning
        self.server_time = server_time
        self._hint = hint  # a callable until asked, then its value

    @property
    def price_to_win(self):
        if callable(self._hint):
            self._hint = self._hint()
        return self._hint


async def standings(*, session_id, weights: dict[str, float]) -> dict[str, Standing]:
    """The standing of each bidder in `weights` (user id -> their weight), in one round trip."""
    keys = live.session_keys(session_id)
    user_ids = list(weights)
    reply = await _run("my_bid", [keys.params, keys.rank, keys.bids, keys.meta], user_ids, session_id)
    _, inventory, threshold, _total, alpha, beta, gamma, start_us, upset_cents, now_us, end_us, open_flag = reply[:12]
    terms = Terms(alpha, beta, gamma, start_us, upset_cents)
    now_us, inventory = int(now_us), int(inventory)
    open_now = open_flag == "1" and int(start_us) <= now_us < int(end_us)
    result = {}
    for index, user_id in enumerate(user_ids):
        cents, score, rank = reply[12 + 3 * index: 15 + 3 * index]
        rank = int(rank) if rank else None
        winning = rank is not None and rank <= inventory
        result[user_id] = Standing(
            price=cents_to_price(int(cents)) if cents else None,
            score=float(score) if score else None,
            rank=rank,
            is_winning=winning if rank is not None else None,
            server_time=us_to_datetime(now_us),
            hint=functools.partial(price_hint, terms, weight=weights[user_id], now_us=now_us, open_now=open_now,
                                   winning=winning, threshold=threshold, own_cents=int(cents) if cents else None),
        )
    return result


async def my_bid(*, session_id, user: CurrentUser) -> dict:
    """GET bids/me: the bidder's bid, rank and price to win; 404 `no_bid` (with the price to win
    in its body) without a bid."""
    standing = (await standings(session_id=session_id, weights={user.id: user.weight}))[user.id]
    if standing.rank is None:
        raise ApplicationError(ErrorCode.NO_BID, "You have no bid in this session.",
                               extra={"price_to_win": standing.price_to_win})
    return {
        "price": standing.price,
        "score": standing.score,
        "rank": standing.rank,
        "is_winning": standing.is_winning,
        "price_to_win": standing.price_to_win,
    }
