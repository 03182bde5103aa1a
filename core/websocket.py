"""ASGI guards in front of the WebSocket routes: which origins may open a socket, and how many
sockets one client address may hold in one process."""

from collections import Counter

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings

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
