"""ASGI guards in front of the WebSocket routes: which origins may open a socket, and how many
sockets one client address may hold in one process; and the board's fan-out write (`frame_writer`)."""

from collections import Counter
from collections.abc import Callable

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

# Close code of a handshake refused for too many sockets from one address (the browser sees 1006).
CLOSE_TOO_MANY = 4429


class BrowserOriginValidator(OriginValidator):
    """Channels' AllowedHostsOriginValidator, except that a client sending no Origin header at all
    (a script, an app: no browser page can omit it) is served. The board is public and read-only;
    what an Origin check protects against is a foreign page riding a visitor's cookies, and only
    browsers send cookies on a page's behalf, always with its Origin."""

    async def __call__(self, scope, receive, send):
        if not any(name == b"origin" for name, _ in scope.get("headers", ())):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)


def browser_origin_validator(application):
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)


class SocketsPerAddressLimit:
    """At most settings.WEBSOCKETS_PER_ADDRESS open sockets per client address in this process
    (0: no cap); the handshake of one more is refused. The address is the ASGI client's: behind
    nginx, daphne's --proxy-headers makes it the visitor's (deploy/). nginx's `limit_conn` caps the
    whole site; this caps what one process holds, whatever sits in front of it."""

    def __init__(self, application):
        self.application = application
        self.open: Counter[str] = Counter()

    async def __call__(self, scope, receive, send):
        limit = settings.WEBSOCKETS_PER_ADDRESS
        address = (scope.get("client") or ("unknown",))[0]
        if limit and self.open[address] >= limit:
            return await WebsocketDenier()(scope, receive, send)
        self.open[address] += 1
        try:
            return await self.application(scope, receive, send)
        finally:
            self.open[address] -= 1
            if not self.open[address]:
                del self.open[address]


def text_frame(text: str) -> bytes:
    """`text` as one server-to-client WebSocket frame (unmasked, uncompressed: the same bytes for
    every socket), serialized by the `websockets` library that uvicorn's protocol frames with."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def frame_writer(send) -> Callable[[bytes], bool] | None:
    """For a socket served by uvicorn's `websockets-sansio` protocol (deploy/Procfile; `send` is its
    ASGI send): a function writing a frame made by `text_frame` straight to the socket's transport
    when that send would write it at once (handshake done, nothing closing, no compression, the
    client's buffers not full), and answering True; False when it wrote nothing (the caller sends
    through ASGI as usual). None under any other server: everything goes through ASGI.

    Why: the board's push goes to thousands of sockets one after the other. Through ASGI each one
    framed the same text again (`websockets`' Frame, in Python) and ran uvicorn's send as a
    coroutine in a task of its own: 30 % of a web process's time in a push to 2,500 sockets, the
    kernel's `send()` being the other 70 % (docs/PERFORMANCE.md, session 8). Built once, written per
    socket, the frame is what uvicorn's send would have written: its send is read against uvicorn
    0.54.0 and websockets 17.4 (tests/test_private_internals.py checks the attributes used here)."""
    protocol = getattr(send, "__self__", None)
    if type(protocol) is not WebSocketsSansIOProtocol:
        return None
    open_ = State.OPEN

    def write(frame: bytes) -> bool:
        # The conditions under which uvicorn's send writes a "websocket.send" at once
        # (WebSocketsSansIOProtocol.send) and websockets' send_text frames it as text_frame does.
        conn = protocol.conn
        if (protocol.writable.is_set() and not protocol.disconnected and protocol.handshake_complete
                and not protocol.close_sent and protocol.initial_response is None and conn.state is open_
                and not conn.expect_continuation_frame and not conn.extensions):
            try:
                protocol.transport.write(frame)
            except Exception:  # noqa: BLE001 (the ASGI send then meets, and reports, the same failure)
                return False
            return True
        return False

    return write
