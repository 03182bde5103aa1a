from django.urls import path

from leaderboard.consumers import BoardConsumer

websocket_urlpatterns = [
    # Any id segment: the consumer closes a malformed or unknown one with 4404 (a route miss would
    # fail the handshake with no code the page could act on).
    path("ws/sessions/<str:session_id>/", BoardConsumer.as_asgi()),
]
