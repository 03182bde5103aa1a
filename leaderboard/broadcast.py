"""Publishing to a session's listeners through the channel layer.

Group: `board.<session_id>` (leaderboard.consumers.board_group). Message:
{"type": "board.message", "text": "<JSON>"}, where the JSON is one of
{"type": "snapshot", "board": {...}}, {"type": "status", "status": "..."} or
{"type": "results", "results": {...}} (the body of GET /api/sessions/{id}/results).
The text is rendered once by the publisher, not once per listener.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from flashbid.json import dumps
from leaderboard.consumers import board_group

logger = logging.getLogger(__name__)


async def publish(session_id: object, message: dict) -> None:
    await get_channel_layer().group_send(
        board_group(session_id), {"type": "board.message", "text": dumps(message).decode()}
    )


def publish_sync(session_id: object, message: dict) -> None:
    """From sync code (Celery tasks, commands). Each call runs in a fresh event loop; the layer's
    connections for that loop are closed before it ends (the 'Event loop is closed' trap)."""

    async def send() -> None:
        layer = get_channel_layer()
        try:
            await publish(session_id, message)
        finally:
            await layer.flush()

    try:
        async_to_sync(send)()
    except Exception:  # the result is durable in PostgreSQL; listeners can still poll
        logger.exception("could not publish to session %s listeners", session_id)


def announce_settled(session_id: str) -> None:
    from auctions.selectors import results_get

    results = results_get(session_id=session_id)
    if results is not None:
        publish_sync(session_id, {"type": "results", "results": results})
