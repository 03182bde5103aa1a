"""The private internals of Django, django-ninja and psycopg's pool that our code relies on, checked
against the pinned versions (requirements.txt). A version bump that changes one of them fails here,
loudly and by name, instead of degrading the fast path or the metrics silently."""

import inspect

import django
import ninja
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.http import HttpResponse
from ninja import NinjaAPI


def test_pinned_versions_are_the_ones_checked():
    assert django.__version__ == "6.1.3", "flashbid/handlers.py was checked against Django 6.1.3: re-check it"
    assert ninja.__version__ == "1.7.1", "flashbid/api.py was checked against django-ninja 1.7.1: re-check it"


def test_asgi_handler_internals_used_by_the_lean_handlers_exist():
    """flashbid/handlers.py: APIHandler.load_middleware sets these, RedisOnlyHandler.handle calls those."""
    handler = ASGIHandler()
    for attribute in ("_view_middleware", "_template_response_middleware", "_exception_middleware",
                      "_middleware_chain"):
        assert hasattr(handler, attribute), attribute
    for method, parameters in (("read_body", ["receive"]), ("create_request", ["scope", "body_file"]),
                               ("send_response", ["response", "send"]), ("run_get_response", ["request"]),
                               ("handle", ["scope", "receive", "send"])):
        assert list(inspect.signature(getattr(ASGIHandler, method)).parameters)[1:] == parameters, method
    for method in ("_get_response", "_get_response_async", "load_middleware", "get_response_async"):
        assert list(inspect.signature(getattr(BaseHandler, method)).parameters)[1:] in (
            ["request"], ["is_async"]), method
    assert isinstance(HttpResponse()._resource_closers, list)


def test_ninja_get_urls_is_the_method_the_api_overrides():
    """flashbid/api.py: FlashBidAPI._get_urls wraps ninja's URL patterns."""
    assert list(inspect.signature(NinjaAPI._get_urls).parameters) == ["self"]
    assert "_get_urls" in inspect.getsource(NinjaAPI.urls.fget)


def test_database_wrapper_keeps_its_pools_where_the_pool_gauge_reads_them(db):
    """core/metrics.py: the pool gauge reads `type(wrapper)._connection_pools[alias]`."""
    wrapper = connections["default"]
    pools = type(wrapper)._connection_pools
    assert isinstance(pools, dict)
    wrapper.ensure_connection()
    assert wrapper.alias in pools and callable(pools[wrapper.alias].get_stats)


def test_redis_cluster_behaviour_the_engine_works_around():
    """core/scripts.py queues scripts on cluster pipelines as raw EVALSHA commands, because redis-py's
    cluster pipelines refuse `.evalsha()`; core/redis.py bounds the commands under way on the async
    cluster client, because its node pools raise instead of waiting. Checked against redis-py 8.1.0."""
    import redis
    from redis.asyncio.cluster import ClusterNode

    assert redis.__version__ == "8.1.0", "core/redis.py and core/scripts.py were checked against redis-py 8.1.0"
    assert "EVALSHA" in redis.cluster.PIPELINE_BLOCKED_COMMANDS
    assert "raise MaxConnectionsError()" in inspect.getsource(ClusterNode.acquire_connection)


async def test_uvicorn_internals_the_fan_out_and_the_http_protocol_rely_on():
    """core/websocket.py's frame_writer reads the state of uvicorn's websockets-sansio protocol (and
    of the `websockets` connection in it) to write a frame only when uvicorn's own send would write
    it at once; flashbid/server.py wraps the transport of uvicorn's httptools request cycle.
    Checked against uvicorn 0.54.0 and websockets 17.4."""
    import uvicorn
    import websockets
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from uvicorn.server import ServerState

    assert uvicorn.__version__ == "0.54.0", "core/websocket.py and flashbid/server.py were checked against 0.54.0"
    assert websockets.version.version == "17.4", "core/websocket.py was checked against websockets 17.4"
    async def app(scope, receive, send):
        pass

    config = Config(app=app, ws="websockets-sansio", lifespan="off", loop="asyncio")
    config.load()
    protocol = WebSocketsSansIOProtocol(config=config, server_state=ServerState(), app_state={})
    for attribute in ("conn", "writable", "disconnected", "handshake_complete", "close_sent", "initial_response"):
        assert hasattr(protocol, attribute), attribute
    for attribute in ("state", "expect_continuation_frame", "extensions"):
        assert hasattr(protocol.conn, attribute), attribute
    send = inspect.getsource(WebSocketsSansIOProtocol.send)
    assert "await self.writable.wait()" in send and "self.conn.send_text(text_data.encode())" in send
    # The request cycle: the head written when the response starts, after marking it started.
    start = inspect.getsource(RequestResponseCycle.send)
    assert start.index("self.response_started = True") < start.index("self.transport.write(b\"\".join(content))")
    assert "self.cycle = RequestResponseCycle(" in inspect.getsource(HttpToolsProtocol.on_headers_complete)
