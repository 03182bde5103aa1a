"""The live board over WebSocket (`/ws/sessions/<id>/`): a snapshot on connect, then whatever the
session's group receives (coalesced boards, the end, the results; shapes in leaderboard/frames.py).

Open to anonymous visitors. An id that is not a session (malformed or unknown) is closed with code
4404 right after the handshake. A signed-in bidder also gets private `you` frames: the page's
socket is signed in by its session cookie; an API client sends a first message
{"type": "auth", "token": "<JWT>"} (never a token in the URL), answered with one `you` frame, or
by closing with 4401 for a bad token. A signed-in socket may ask for its standing again with
{"type": "you"} (answered at most once a second). Nothing else a client sends is read.

A socket has no channel of its own and does not join the group: the process's relay for the
session (leaderboard/broadcaster.py, `Broadcaster.join`) receives each group message once and
calls `relay` on every local socket of the session, which sends the pre-rendered text. Under
uvicorn (deploy/Procfile) the text is framed once per push and the frame written straight to each
socket whose ASGI send would have written it at once (core.websocket.frame_writer): the same bytes,
without a framing and a task per socket (a push's p99 to 5,000 listeners 219-306 → 153-159 ms);
anything else goes through `push`.

**Pushes never wait on a client** (`push`), whatever the server. daphne's send never suspends
(Twisted buffers per connection); uvicorn's waits while the client's transport is over its
high-water mark, so one client that stops reading would hold up the relay that sends each board to
every socket of the session in the process, one after the other. A push therefore runs as an eager
task (asyncio.eager_task_factory): a send that does not suspend, the normal case on every server,
completes right there at the cost of a call (~1 µs, no scheduling); one that does suspend goes on
without the relay, and the socket's later frames queue behind it (`_waiting`), in order. Boards
and `you` frames are whole states, so a queued one replaces the older one of its kind: a stalled
client holds at most one of each plus the status frames (a handful per session), never a growing
queue. A client that never reads again is closed by the server's keepalive (uvicorn's ping
timeout, daphne's), which ends the waiting send.
"""

import asyncio
import logging
import uuid

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.cookie import parse_cookie

from accounts.selectors import login_session, user_from_login_session, user_from_token
from accounts.user_cache import CurrentUser
from auctions import recovery
from core.exceptions import ApplicationError, ErrorCode
from core.metrics import WEBSOCKETS_OPEN
from core.websocket import frame_writer, text_frame
from leaderboard.broadcaster import get_broadcaster
from leaderboard.frames import BOARD_SIZE, board_message, render, you_message
from leaderboard.selectors import Standing, board_read, standings

logger = logging.getLogger(__name__)

CLOSE_UNKNOWN_SESSION = 4404
CLOSE_BAD_TOKEN = 4401
# An auth message longer than this is not a token.
MAX_AUTH_MESSAGE = 4096
# A socket's "you" requests are answered at most this often (one script call each).
YOU_REQUEST_INTERVAL_SECONDS = 1.0


class BoardConsumer(AsyncWebsocketConsumer):
    # No channel per socket (no SUBSCRIBE, no receive task): broadcasts come through the relay.
    channel_layer_alias = None
    session_id: str | None = None
    # The board version this socket has; older or equal boards are not sent again.
    version = -1
    # Broadcasts relayed before the snapshot went out: sent, filtered by version, right after it.
    pending: list[dict] | None = None
    # The signed-in bidder (cookie or auth message), and the is_winning their last `you` frame said.
    user: CurrentUser | None = None
    you_winning: bool | None = None
    auth_tried = False
    you_answered_at = float("-inf")
    # Frames held behind a push that waits on the client (None: no push is waiting): ASGI messages,
    # each with its kind ("board", "you" or None for frames that are never replaced).
    _waiting: list[tuple[str | None, dict]] | None = None
    _sending: asyncio.Task | None = None
    # Under uvicorn: writes a relayed board's frame, built once per push, straight to this socket
    # (core.websocket.frame_writer); None under other servers.
    _write_frame = None

    async def connect(self) -> None:
        await self.accept()
        self._write_frame = frame_writer(self.base_send)
        try:
            session_id = str(uuid.UUID(self.scope["url_route"]["kwargs"]["session_id"]))
        except ValueError:
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        # An unknown id is refused before it costs anything: no relay, no SQL (known from Redis).
        if not await recovery.session_known(session_id):
            await self.close(code=CLOSE_UNKNOWN_SESSION)
            return
        self.user = await self._cookie_user()
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
        for event in pending:  # pushed in order behind the snapshot
            self.relay(event)
        if self.user is not None:
            await self._you_now()

    async def _cookie_user(self) -> CurrentUser | None:
        """The bidder the page's session cookie signs in (no SQL once the caches are warm)."""
        cookies = {}
        for name, value in self.scope.get("headers", ()):
            if name == b"cookie":
                cookies.update(parse_cookie(value.decode("latin-1")))
        session_key = cookies.get(settings.SESSION_COOKIE_NAME)
        return await user_from_login_session(login_session(session_key)) if session_key else None

    async def _you_now(self) -> None:
        """One `you` frame with the bidder's current standing."""
        found = await standings(session_id=self.session_id, weights={self.user.id: self.user.weight})
        self.you(found[self.user.id], changed_only=False)

    def you(self, standing: Standing, *, changed_only: bool = True) -> None:
        """The bidder's private frame, when their is_winning changed (the broadcaster asks once per
        board push; their first bid counts as a change)."""
        if changed_only and standing.is_winning == self.you_winning:
            return
        self.you_winning = standing.is_winning
        self.push({"type": "websocket.send", "text": render(you_message(standing))}, kind="you")

    async def disconnect(self, code: int) -> None:
        if self.session_id is not None:
            WEBSOCKETS_OPEN.dec()
            session_id, self.session_id = self.session_id, None
            await get_broadcaster().leave(session_id, self)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """The messages read: a first {"type": "auth", "token"} signs the socket in (a bad token
        closes it with 4401); {"type": "you"} asks a signed-in socket's standing again (answered
        at most once per YOU_REQUEST_INTERVAL_SECONDS). Anything else, and any later auth
        message, is ignored."""
        if self.session_id is None or not text_data or len(text_data) > MAX_AUTH_MESSAGE:
            return
        try:
            message = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "you" and self.user is not None:
            now = asyncio.get_running_loop().time()
            if now - self.you_answered_at >= YOU_REQUEST_INTERVAL_SECONDS:
                self.you_answered_at = now
                await self._you_now()
            return
        if kind != "auth" or self.auth_tried:
            return
        self.auth_tried = True
        token = message.get("token")
        user = await user_from_token(token) if isinstance(token, str) and token else None
        if user is None:
            await self.close(code=CLOSE_BAD_TOKEN)
            return
        self.user, self.you_winning = user, None
        await self._you_now()

    def relay(self, event: dict) -> None:
        """A group message ({"type": "board.message", "text", "version"?}) for this socket: held
        until the snapshot is out, dropped if it is a board not newer than this socket's, else
        pushed (the pre-rendered text): under uvicorn written at once as a frame shared by the
        session's sockets when nothing waits before it and uvicorn would write it at once, else
        through `push`."""
        if self.pending is not None:
            self.pending.append(event)
            return
        version = event.get("version")
        if version is not None:
            if version <= self.version:
                return
            self.version = version
        if self._waiting is None and self._write_frame is not None:
            frame = event.get("frame")
            if frame is None:  # the first socket of the push frames it for all of them
                frame = event["frame"] = text_frame(event["text"])
            if self._write_frame(frame):
                return
        self.push({"type": "websocket.send", "text": event["text"]}, kind="board" if version is not None else None)

    def push(self, message: dict, *, kind: str | None = None) -> None:
        """Send `message` after every frame pushed before it, without waiting on the client (module
        docstring). `kind` ("board", "you"): a whole state, which replaces a queued one of its kind."""
        if self._waiting is None:
            self._send_eagerly(message)
            return
        if kind is not None:
            for n, (queued_kind, _) in enumerate(self._waiting):
                if queued_kind == kind:
                    del self._waiting[n]
                    break
        self._waiting.append((kind, message))

    def _send_eagerly(self, message: dict) -> bool:
        """One ASGI send, run at once; True if it is done, else it goes on as a task and later
        frames wait (`_waiting`) until it ends."""
        sending = asyncio.eager_task_factory(asyncio.get_running_loop(), self.base_send(message))
        if not sending.done():
            self._waiting = []
            self._sending = sending  # the loop keeps only a weak reference to a task
            sending.add_done_callback(self._sent)
            return False
        self._failed(sending)
        return True

    def _sent(self, sending: asyncio.Task) -> None:
        """A send that waited on the client ended: the frames queued behind it go out, in order."""
        waiting, self._waiting, self._sending = self._waiting or [], None, None
        if self._failed(sending):
            return  # the connection is gone: what waited behind the send goes nowhere
        for n, (_, message) in enumerate(waiting):
            if not self._send_eagerly(message):
                self._waiting.extend(waiting[n + 1:])
                return

    @staticmethod
    def _failed(sending: asyncio.Task) -> bool:
        if sending.cancelled():
            return True
        if (exc := sending.exception()) is not None:
            logger.warning("board push: a send to one socket failed (%r)", exc)
            return True
        return False
