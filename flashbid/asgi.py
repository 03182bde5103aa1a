"""The ASGI application: HTTP to Django, WebSockets to Channels (routes owned by leaderboard/)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from flashbid.observability import RequestContext  # noqa: E402
from leaderboard.routing import websocket_urlpatterns  # noqa: E402

application = RequestContext(ProtocolTypeRouter({
    "http": django_application,
    "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
}))
