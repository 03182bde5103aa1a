"""The NinjaAPI's error contract outside the routers (flashbid.api): a path no route matches (also a
malformed session id) and a wrong method are answered with {"detail", "code"} too, never a page."""

import pytest

from tests.assertions import assert_error, bids_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(make_session):
    return make_session(upset_price="10.00")


@pytest.mark.parametrize("path", ["/api/sessions/not-a-uuid", "/api/sessions/not-a-uuid/leaderboard",
                                  "/api/sessions/not-a-uuid/leaderboard/meta", "/api/sessions/not-a-uuid/results",
                                  "/api/no-such-endpoint"])
async def test_get_of_a_malformed_session_id_or_unknown_path_is_not_found(api, path):
    assert_error(await api.get(path), 404, "not_found")


async def test_wrong_method_on_the_bid_endpoint_is_method_not_allowed_with_the_contract_body(api, session):
    response = await api.delete(bids_url(session))
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_unsafe_method_on_an_unknown_api_path_is_not_found_not_a_csrf_page(api, method):
    assert_error(await api.request(method, "/api/no-such-endpoint", json={}), 404, "not_found")


async def test_the_api_docs_load_only_our_own_static_files(api):
    """Swagger UI from /static/ (ninja's assets), not a CDN: it works offline and nothing is loaded
    from a host we do not control. The page runs under the pages' policy (its scripts from 'self')."""
    import re

    page = await api.get("/api/docs")
    assert page.status_code == 200
    html = page.text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:[a-z][a-z0-9+.-]*:)?//""", html, flags=re.I), html
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert (await api.get(asset)).status_code == 200, asset
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in html  # its configuration is a JSON block read by a static script
