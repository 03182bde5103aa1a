"""uvicorn's HTTP protocol (httptools), writing each response's head and body in one send().

uvicorn writes a response's status line and headers when the application sends
`http.response.start`, and its body when it sends `http.response.body`: two writes, and on an idle
connection two send() system calls and two TCP segments for every answer, the client woken for
each. At the bid's saturation those two calls were 14 % of a web process's CPU samples; merged,
~5 % less CPU per bid (docs/PERFORMANCE.md, session 8). Here a response whose length is known
(Content-Length: every API answer, every page) has its head held and written together with its
body; a streamed one (chunked: the exports), the answer to a HEAD request and anything written
before the response starts (`100 Continue`) go out as before. The WebSocket upgrade is untouched.

A subclass because uvicorn offers no setting for it and its other protocols (h11, zttp) write the
head on its own too (uvicorn 0.54.0, pinned in requirements.txt). It only wraps the transport
a request's cycle writes to; should uvicorn's cycle change, tests/test_server.py says so.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeadWithBody:
    """The transport of one request's cycle: the head of a response with a Content-Length (to
    anything but HEAD) is held and written with the body's first write, one send() instead of
    two. Anything else, and every other transport call, goes through (a close first writes a held
    head, unless the connection is gone; an abort drops it)."""

    # The cycle and this transport refer to each other until the head goes by; the reference is
    # then dropped (None: the head went by, held or written), so that a finished request's objects
    # are freed at once, as uvicorn's are, and not left to the cyclic collector (with them left,
    # the bid's p99 at half load had doubled).
    __slots__ = ("_transport", "_cycle", "_head")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle):
        self._transport = transport
        self._cycle: RequestResponseCycle | None = cycle
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif self._cycle is not None and self._cycle.response_started:
            # The cycle writes the head right after marking the response started; chunked_encoding
            # is False only when the head carried a Content-Length. A HEAD request's answer has no
            # body write to carry it.
            cycle, self._cycle = self._cycle, None
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self._head = data
                return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():  # the client left: nothing to write to (uvloop raises)
                self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """`uvicorn --http flashbid.server:HttpProtocol` (deploy/Procfile and the other deploy files)."""

    def on_headers_complete(self) -> None:
        cycle = self.cycle
        super().on_headers_complete()
        # A new request (not an upgrade) whose application has not run yet: its task was only
        # scheduled. Under an eager task factory it may have answered already: left as it is.
        if self.cycle is not cycle and not self.cycle.response_started:
            self.cycle.transport = _HeadWithBody(self.cycle.transport, self.cycle)
