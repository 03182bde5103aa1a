"""The live board over WebSocket (`/ws/sessions/<id>/`): a snapshot on connect, then whatever the
session's group receives (coalesced boards, the end, the results; shapes in leaderboard/frames.py).

Read-only and open to anonymous visitors. An id that is not a session (malformed or unknown)
is closed with code 4404 right after the handshake.

A socket has no channel of its own and does not join the group: the process's relay for the
session (leaderboard/broadcaster.py, `Broadcaster.join`) receives each group message once and
calls `relay` on every local socket of the session, which sends the pre-rendered text.
"""

import uuid

from channels.generic.websocket import AsyncWebsocketConsumer

from auctions import recovery
from core.exceptions import ApplicationError, ErrorCode
from core.metrics import WEBSOCKETS_OPEN
from leaderboard.broadcaster import get_broadcaster
from leaderboard.frames import BOARD_SIZE, board_message, render
from leaderboard.selectors import board_read

CLOSE_UNKNOWN_SESSION = 4404


class BoardConsumer(AsyncWebsocketConsumer):
    # No channel per socket (no SUBSCRIBE, no receive task): broadcasts come through the relay.
    channel_layer_alias = None
    session_id: str | None = None
    # The board version this socket has; older or equal boards are not sent again.
    version = -1
    # Broadcasts relayed before the snapshot went out: sent, filtered by version, right after it.
    pending: list[dict] | None = None

    async def connect(self) -> None:
        await self.accept()
        try:
            session_id = str(uuid.UUID(self.scope["url_route"]["kwargs"]["session_id"]))
        except ValueError:
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        # An unknown id is refused before it costs anything: no relay, no SQL (known from Redis).
        if not await recovery.session_known(session_id):
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        # Join the relay before reading the snapshot: a push published in between is held, not
        # lost (and dropped by version if the snapshot already has it).
        broadcaster = get_broadcaster()
        self.pending = []
        await broadcaster.join(session_id, self)
        try:
            board = await board_read(session_id=session_id, offset=0, count=BOARD_SIZE)
        except ApplicationError as exc:
            await broadcaster.leave(session_id, self)
            if exc.code != ErrorCode.NOT_FOUND:
                raise
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        except BaseException:  # Redis down, or the client went away: leave no membership behind
            await broadcaster.leave(session_id, self)
            raise
        self.version = board.version
        WEBSOCKETS_OPEN.inc()
        self.session_id = session_id  # from here on, disconnect() undoes the join
        await self.send(text_data=render(board_message("snapshot", board)))
        pending = self.pending
        self.pending = None  # relay() sends from now on
        for event in pending:  # daphne's send never suspends: nothing relayed overtakes these
            await self.relay(event)

    async def disconnect(self, code: int) -> None:
        if self.session_id is not None:
            WEBSOCKETS_OPEN.dec()
            session_id, self.session_id = self.session_id, None
            await get_broadcaster().leave(session_id, self)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """The socket is read-only: whatever a client sends is ignored."""

    async def relay(self, event: dict) -> None:
        """A group message ({"type": "board.message", "text", "version"?}) for this socket: held
        until the snapshot is out, dropped if it is a board not newer than this socket's, else one
        ASGI send of the pre-rendered text (daphne's never waits on the client)."""
        if self.pending is not None:
            self.pending.append(event)
            return
        version = event.get("version")
        if version is not None:
            if version <= self.version:
                return
            self.version = version
        await self.base_send({"type": "websocket.send", "text": event["text"]})
