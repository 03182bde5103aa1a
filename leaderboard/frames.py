"""The frames a session's WebSocket listeners receive, and publishing them through the channel layer.

Every frame is JSON text; the pages depend on exactly these shapes (times are UTC ISO-8601 with Z,
prices decimal strings, scores JSON numbers, as in the HTTP API):

- on connect, to that socket only:
  {"type": "snapshot", "board": <body of GET /api/sessions/{id}/leaderboard?page=1&page_size=10>,
   "server_time": "...Z", "end_time": "...Z", "start_time": "...Z"}
- when the board changed (coalesced across every web process: at most one per session per
  BROADCAST_INTERVAL_MS, the last state within about one interval of the last accepted bid):
  the same shape with "type": "board". A socket never gets a board older than, or equal to, the
  version it already has (board["version"] only grows on one socket).
- once when the session's end passes by Redis's clock (not after settlement):
  {"type": "status", "status": "ended", "server_time": "...Z"}
- once when the session is settled: {"type": "results", "results": <body of GET
  /api/sessions/{id}/results>}
- private, to a signed-in bidder's sockets only (the page's session cookie, or an API client's
  first message {"type": "auth", "token": "<JWT>"}): {"type": "you", "rank", "is_winning",
  "price_to_win", "price", "score", "server_time"} once on sign-in (the current state; rank,
  is_winning, price and score null without a bid), then whenever their own is_winning changes
  (within about one push interval: leaderboard/broadcaster.py checks the signed-in listeners once
  per board push, not per bid), and in answer to a {"type": "you"} request (at most one a second).

Channel-layer side: group `board.<session_id>` (`board_group`), message
{"type": "board.message", "text": "<the JSON above>", "version": <board version, boards only>}.
The text is rendered once by the publisher, never once per listener.
"""

import asyncio
import logging

from channels.layers import get_channel_layer

from auctions.selectors import results_get
from core.json import dumps
from core.metrics import PUSHES
from leaderboard.selectors import Board, board_page_body

logger = logging.getLogger(__name__)

# The board in snapshot and board messages: page 1 of this size.
BOARD_SIZE = 10


def board_group(session_id: object) -> str:
    """The channel-layer group of one session's listeners."""
    return f"board.{session_id}"


def board_message(kind: str, board: Board) -> dict:
    """A `snapshot` or `board` message for a board read at offset 0, BOARD_SIZE rows."""
    return {
        "type": kind,
        "board": board_page_body(board, page=1, page_size=BOARD_SIZE),
        "server_time": board.server_time,
        "end_time": board.end_time,
        "start_time": board.start_time,
    }


def you_message(standing) -> dict:
    """A bidder's private frame from their Standing (leaderboard.selectors.standings)."""
    return {"type": "you", "rank": standing.rank, "is_winning": standing.is_winning,
            "price_to_win": standing.price_to_win, "price": standing.price, "score": standing.score,
            "server_time": standing.server_time}


def status_message(status: str, server_time) -> dict:
    return {"type": "status", "status": status, "server_time": server_time}


def render(message: dict) -> str:
    return dumps(message).decode()


async def publish(session_id: object, message: dict, *, version: int | None = None) -> None:
    """One group send (one PUBLISH with the pub/sub layer) for every listener in every process."""
    event = {"type": "board.message", "text": render(message)}
    if version is not None:
        event["version"] = version
    await get_channel_layer().group_send(board_group(session_id), event)
    PUSHES.labels(message["type"]).inc()


def publish_sync(session_id: object, message: dict) -> None:
    """From sync code (Celery tasks, commands, a sync view). Runs in an event loop of its own,
    closing the layer's connections for that loop before the loop ends (the 'Event loop is closed'
    trap).

    Not async_to_sync: inside a sync view (a sync_to_async thread of daphne) that would run on the
    server's own loop, and flushing the layer there would unsubscribe every socket of the process."""

    async def send() -> None:
        layer = get_channel_layer()
        try:
            await publish(session_id, message)
        finally:
            await layer.flush()

    try:
        asyncio.run(send())
    except Exception:  # the result is durable in PostgreSQL; listeners can still poll
        logger.exception("could not publish to session %s listeners", session_id)


def announce_settled(sender, *, session_id: str, **kwargs) -> None:
    """Receiver of auctions.events.session_settled (connected in LeaderboardConfig.ready): the
    results frame to every listener of the session."""
    results = results_get(session_id=session_id)
    if results is not None:
        publish_sync(session_id, {"type": "results", "results": results})
