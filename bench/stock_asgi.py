"""FlashBid's ASGI application as stock Django would serve it: every HTTP path through Django's own
ASGI handler (the full middleware chain, a ThreadSensitiveContext per request, request signals).
The "before" of flashbid/handlers.py, for A/B runs:

    .venv/bin/python bench/run.py --asgi bench.stock_asgi:application --skip openloop,leaderboard,...
"""

from flashbid.asgi import application as _application
from flashbid.asgi import django_application

# The same stack minus the API's lean routing: RequestContext(ProtocolTypeRouter({...})).
_router = _application.app
application = type(_application)(type(_router)({
    "http": django_application,
    "websocket": _router.application_mapping["websocket"],
}))
