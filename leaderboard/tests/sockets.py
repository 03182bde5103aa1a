"""Helpers for the board socket tests: an anonymous socket on a session's board (channels.testing
against flashbid.asgi.application) and waiting for its messages."""

import json
import time

from channels.testing import WebsocketCommunicator

from flashbid.asgi import application

ORIGIN = [(b"origin", b"http://localhost")]


async def connect(session_id) -> WebsocketCommunicator:
    """An anonymous socket (no cookie, no token) on the session's board."""
    socket = WebsocketCommunicator(application, f"/ws/sessions/{session_id}/", headers=ORIGIN)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    return socket


async def receive_until(socket: WebsocketCommunicator, done, timeout: float) -> list[dict]:
    """Every message up to and including the first for which done(message) holds."""
    deadline = time.monotonic() + timeout
    messages = []
    while True:
        message = json.loads(await socket.receive_from(timeout=max(0.01, deadline - time.monotonic())))
        messages.append(message)
        if done(message):
            return messages


def board_at(version: int):
    return lambda m: m["type"] == "board" and m["board"]["version"] >= version
