import httpx
import pytest


@pytest.fixture
def bidder(make_user):
    return make_user()


@pytest.fixture
async def api_from():
    """`api_from("203.0.113.7")`: an HTTP client to the ASGI application whose requests come from
    that client address (REMOTE_ADDR)."""
    from flashbid.asgi import application

    clients = []

    def make(address: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=application, client=(address, 40_000)),
                                   base_url="http://localhost")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
