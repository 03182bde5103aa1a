"""The live read model over Redis: board pages, the tiny meta, one bidder's standing.

Every read is one round trip to one Lua script that returns a consistent snapshot (version and
rows from the same instant) in O(log N + page size)."""

import math
import threading
from dataclasses import dataclass

from cachetools import TTLCache
from django.conf import settings

from auctions import live, recovery
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


async def my_bid(*, session_id, user_id: str) -> dict:
    keys = live.session_keys(session_id)
    reply = await _run("my_bid", [keys.params, keys.rank, keys.bids, keys.meta], [user_id], session_id)
    if reply[0] == "err":
        raise ApplicationError(ErrorCode.NO_BID, "You have no bid in this session.")
    _, cents, score, rank, inventory = reply
    return {
        "price": cents_to_price(int(cents)),
        "score": float(score),
        "rank": int(rank),
        "is_winning": int(rank) <= int(inventory),
    }
