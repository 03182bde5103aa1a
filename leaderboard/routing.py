from django.urls import path

from leaderboard.consumers import BoardConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/", BoardConsumer.as_asgi()),
]
