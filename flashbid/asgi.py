"""The ASGI application: HTTP to Django (the API through flashbid.handlers), WebSockets to Channels
(routes owned by leaderboard/)."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# /static/ from the apps' static folders (the pages' CSS and JS); every other path goes straight
# through, so the API pays one prefix check. In deploy nginx serves STATIC_ROOT before this.
django_application = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core.observability import RequestContext  # noqa: E402
from core.websocket import SocketsPerAddressLimit, browser_origin_validator  # noqa: E402
from flashbid.handlers import http_router  # noqa: E402
from leaderboard.routing import websocket_urlpatterns  # noqa: E402

application = RequestContext(ProtocolTypeRouter({
    # /api/ through the API's lean handlers (flashbid.handlers), everything else through Django's.
    "http": http_router(django_application),
    # Foreign browser origins refused, clients without an Origin served; a cap per client address.
    "websocket": SocketsPerAddressLimit(browser_origin_validator(URLRouter(websocket_urlpatterns))),
}))

# Everything imported so far (Django, ninja, Channels, the URL and model registries: hundreds of
# thousands of objects) lives as long as the process. Moved out of the collector's view, a full
# collection scans only what requests create: with 1,000 sockets open, full collections had been
# taking 100-180 ms, each one a pause for every request and push in the process. (Collected first,
# so that the garbage of the imports is freed rather than frozen.)
gc.collect()
gc.freeze()

# What requests create still grows: the auth caches hold a token and a user per bidder (tens of
# thousands), and a full collection scans them all. With the young generation collected every 700
# container allocations (Python's default), a web process at a few thousand bids/s ran a full
# collection every 10-20 s, each a 6-61 ms pause for every request in it (the tail of the bid's
# p99 at 50 % load). Every 20,000: none in a 3-minute bench run, the p99 at 50 % 7.4-10.3 ms
# against 14.5-24.8 ms, RSS unchanged (docs/PERFORMANCE.md, 2026-12-02, session 7).
gc.set_threshold(20_000, 10, 10)
