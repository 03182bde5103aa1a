"""The live board over WebSocket: a snapshot on connect, then the board whenever it changes.

Read-only and open to anonymous visitors. Clients join the channel-layer group of the session
(`board_group`); whoever publishes a board state sends it there once for all listeners."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from flashbid.errors import ApiError
from flashbid.json import dumps
from leaderboard.selectors import leaderboard_page

SNAPSHOT_SIZE = 10
CLOSE_UNKNOWN_SESSION = 4404


def board_group(session_id: object) -> str:
    """The channel-layer group of one session's listeners."""
    return f"board.{session_id}"


class BoardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.session_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        await self.accept()
        try:
            board = await leaderboard_page(session_id=self.session_id, page=1, page_size=SNAPSHOT_SIZE)
        except ApiError:
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        self.group = board_group(self.session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send(text_data=dumps({"type": "snapshot", "board": board}).decode())

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """The socket is read-only: client messages are ignored."""

    async def board_message(self, event: dict) -> None:
        """A pre-rendered message for every listener of the session (board, status, results)."""
        await self.send(text_data=event["text"])
