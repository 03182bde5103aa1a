"""The live board over WebSocket (`/ws/sessions/<id>/`): a snapshot on connect, then whatever the
session's group receives (coalesced boards, the end, the results; shapes in leaderboard/broadcast.py).

Read-only and open to anonymous visitors. An id that is not a session (malformed or unknown)
is closed with code 4404 right after the handshake.
"""

import uuid

from channels.generic.websocket import AsyncWebsocketConsumer

from flashbid.errors import ApiError
from flashbid.metrics import WEBSOCKETS_OPEN
from leaderboard.broadcast import BOARD_SIZE, board_group, board_message, render
from leaderboard.broadcaster import get_broadcaster
from leaderboard.selectors import board_read

CLOSE_UNKNOWN_SESSION = 4404
_BROADCAST = "board.message"


class BoardConsumer(AsyncWebsocketConsumer):
    session_id: str | None = None
    group: str | None = None
    # The board version this socket has; older or equal boards are not sent again.
    version = -1

    async def connect(self) -> None:
        await self.accept()
        try:
            session_id = str(uuid.UUID(self.scope["url_route"]["kwargs"]["session_id"]))
        except ValueError:
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        # Join before reading the snapshot: a push published in between is queued, not lost (and
        # dropped by version if the snapshot already has it).
        group = board_group(session_id)
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            board = await board_read(session_id=session_id, offset=0, count=BOARD_SIZE)
        except ApiError:
            await self.channel_layer.group_discard(group, self.channel_name)
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        except BaseException:  # Redis down, or the client went away: leave no membership behind
            await self.channel_layer.group_discard(group, self.channel_name)
            raise
        self.session_id, self.version = session_id, board.version
        get_broadcaster().listen(session_id)
        WEBSOCKETS_OPEN.inc()
        self.group = group  # from here on, disconnect() undoes the three lines above
        await self.send(text_data=render(board_message("snapshot", board)))

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            get_broadcaster().unlisten(self.session_id)
            WEBSOCKETS_OPEN.dec()
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """The socket is read-only: whatever a client sends is ignored."""

    async def dispatch(self, message: dict) -> None:
        # Channels runs aclose_old_connections() (a sync_to_async thread hop) before every handler;
        # relaying a pre-rendered broadcast touches no database, and that hop was over a third of
        # the fan-out's cost in profiles of 1,000 sockets. Everything else keeps it.
        if message["type"] == _BROADCAST:
            await self.board_message(message)
        else:
            await super().dispatch(message)

    async def board_message(self, event: dict) -> None:
        """A pre-rendered message for every listener of the session (board, status, results)."""
        version = event.get("version")
        if version is not None:
            if version <= self.version:
                return
            self.version = version
        await self.base_send({"type": "websocket.send", "text": event["text"]})
