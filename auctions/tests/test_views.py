"""The bidder pages render for anonymous and logged-in visitors in every lifecycle state; the page's
session cookie and CSRF token are what the bid API accepts; the static files are served."""

import json
import re
import uuid
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from auctions.models import Ranking, SessionStatus
from core.exceptions import ErrorCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]

SESSION_JS = Path(__file__).resolve().parents[1] / "static" / "flashbid" / "session.js"


@pytest.fixture
def sessions(make_session, make_user):
    settled = make_session(starts_in=-7200, lasts=3600, inventory=1)
    winner, loser = make_user(username="winner"), make_user(username="loser")
    Ranking.objects.create(session=settled, bidder=winner, rank=1, price="30.00", score=30.0, seq=2, is_winner=True)
    Ranking.objects.create(session=settled, bidder=loser, rank=2, price="20.00", score=20.0, seq=1, is_winner=False)
    settled.status, settled.final_price, settled.settled_at = SessionStatus.SETTLED, "30.00", timezone.now()
    settled.save()
    return {
        "scheduled": make_session(starts_in=600),
        "active": make_session(),
        "ended": make_session(starts_in=-7200, lasts=3600),
        "settled": settled,
        "winner": winner,
        "loser": loser,
    }


def page_config(response) -> dict:
    match = re.search(r'<script id="session-config" type="application/json">(.*?)</script>',
                      response.content.decode(), re.S)
    assert match, "no session-config on the page"
    return json.loads(match.group(1))


def test_every_page_renders_for_anonymous_and_logged_in_visitors(client, sessions, make_user):
    paths = ["/"]
    for status in ("scheduled", "active", "ended", "settled"):
        paths += [f"/sessions/{sessions[status].pk}/", f"/sessions/{sessions[status].pk}/results/"]
    for path in paths:
        assert client.get(path).status_code == 200, path
    client.force_login(make_user())
    for path in paths:
        assert client.get(path).status_code == 200, path


def test_the_list_puts_each_session_in_its_status_section(client, sessions):
    page = client.get("/").content.decode()
    for status in ("scheduled", "active", "ended", "settled"):
        section = page.split(f'id="sessions-{status}"', 1)[1].split("</section>", 1)[0]
        assert f"/sessions/{sessions[status].pk}/" in section, status


def test_an_unknown_session_is_404(client):
    assert client.get(f"/sessions/{uuid.uuid4()}/").status_code == 404
    assert client.get(f"/sessions/{uuid.uuid4()}/results/").status_code == 404


def test_anonymous_visitors_watch_and_get_a_login_link_back_to_the_session(client, sessions):
    session = sessions["active"]
    response = client.get(f"/sessions/{session.pk}/")
    page = response.content.decode()
    assert 'id="bid-form"' not in page
    assert f'href="/login/?next=%2Fsessions%2F{session.pk}%2F"' in page
    config = page_config(response)
    assert config["user"] is None and config["status"] == "active"


def test_the_login_link_carries_the_whole_current_address_once_encoded(client):
    html = client.get("/?status=active&page=2").content.decode()
    assert 'href="/login/?next=/%3Fstatus%3Dactive%26page%3D2"' in html


def test_the_session_page_shows_the_session_terms_and_its_live_endpoints(client, sessions, make_user):
    session = sessions["active"]
    user = make_user()
    client.force_login(user)
    response = client.get(f"/sessions/{session.pk}/")
    page = response.content.decode()
    assert 'id="bid-form"' in page and "csrfmiddlewaretoken" in page
    assert session.product.name in page and str(session.upset_price) in page
    config = page_config(response)
    assert config["user"] == {"id": str(user.pk), "username": user.username, "weight": user.weight}
    assert config["currency"] == "USD"
    assert config["inventory"] == session.inventory and config["upset_price"] == str(session.upset_price)
    assert config["urls"]["bids"] == f"/api/sessions/{session.pk}/bids"
    assert config["urls"]["meta"] == f"/api/sessions/{session.pk}/leaderboard/meta"
    assert config["ws_path"] == f"/ws/sessions/{session.pk}/"
    assert '<meta name="viewport"' in page


def test_the_pages_session_cookie_and_csrf_token_place_a_bid_through_the_api(sessions, make_user):
    session = sessions["active"]
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user())
    client.get(f"/sessions/{session.pk}/")
    token = client.cookies["csrftoken"].value
    url = f"/api/sessions/{session.pk}/bids"
    refused = client.post(url, {"price": "20.00"}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    accepted = client.post(url, {"price": "20.00"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["rank"] == 1


@pytest.mark.parametrize(("who", "outcome"), [
    ("winner", "You won a unit (rank 1), at the final price of 30.00 USD."),
    ("loser", "You did not win: your bid of 20.00 USD ranked 2 of 2."),
    ("nobody", "You did not bid in this session."),
])
def test_the_results_page_shows_the_final_price_the_winners_and_my_outcome(client, sessions, make_user, who,
                                                                          outcome):
    client.force_login(sessions[who] if who != "nobody" else make_user())
    page = client.get(f"/sessions/{sessions['settled'].pk}/results/").content.decode()
    assert 'id="final-price">30.00 USD<' in page
    assert "winner" in page.split('id="winners"', 1)[1]
    assert outcome in " ".join(page.split())


def test_the_results_page_shows_whether_the_result_was_verified_and_links_its_log(client, sessions):
    from auctions.models import BiddingSession

    settled = sessions["settled"]
    url = f"/sessions/{settled.pk}/results/"
    assert "has not run yet" in client.get(url).content.decode()
    BiddingSession.objects.filter(pk=settled.pk).update(log_digest="ab" * 32, audit_verified=True,
                                                         audit_checked_at=timezone.now())
    page = client.get(url).content.decode()
    assert 'data-verified="true"' in page and "Verified" in page
    assert f'href="/api/sessions/{settled.pk}/log"' in page and "ab" * 32 in page


def test_the_results_page_says_settling_until_the_session_is_settled(client, sessions):
    page = client.get(f"/sessions/{sessions['ended'].pk}/results/").content.decode()
    assert 'id="settling"' in page and "Settling" in page and "flashbid/results.js" in page
    page = client.get(f"/sessions/{sessions['active'].pk}/results/").content.decode()
    assert "still open" in page


async def test_static_files_are_served_by_the_asgi_application(api):
    response = await api.get("/static/flashbid/session.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert (await api.get("/static/flashbid/site.css")).status_code == 200
    assert (await api.get("/static/flashbid/nothing-here.js")).status_code == 404


def test_the_pages_javascript_has_friendly_text_for_every_bid_error_code():
    source = SESSION_JS.read_text()
    block = source.split("const BID_ERRORS = {", 1)[1].split("};", 1)[0]
    codes = set(re.findall(r"^\s*(\w+):", block, re.M))
    assert codes <= {str(code) for code in ErrorCode}, codes - {str(code) for code in ErrorCode}
    bid_codes = {ErrorCode.INVALID_PRICE, ErrorCode.BELOW_UPSET_PRICE, ErrorCode.NOT_HIGHER,
                 ErrorCode.SESSION_NOT_STARTED, ErrorCode.SESSION_ENDED, ErrorCode.RATE_LIMITED,
                 ErrorCode.NOT_AUTHENTICATED, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.INVALID,
                 ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.UNAVAILABLE}
    assert {str(code) for code in bid_codes} <= codes


def test_the_session_page_says_no_winner_pays_more_than_their_bid(client, sessions, make_user):
    client.force_login(make_user())
    page = " ".join(client.get(f"/sessions/{sessions['active'].pk}/").content.decode().split())
    assert "If you win, you pay the lowest winning price, never more than your bid." in page
