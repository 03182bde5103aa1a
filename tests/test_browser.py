"""The pages in a real headless Chromium (Debian's, through Playwright) against real processes:
daphne, a Celery worker and beat (persist and settle every second). A visitor registers, bids, sees
bad bids explained and a rival outbid them live; with the socket down the page polls and still
updates; when the session ends the page shows the results.

Screenshots go to var/test-artifacts/ (ignored by git). With FLASHBID_DOCS_SCREENSHOT=1 the first
test also refreshes docs/screenshot-session.png, and the admin's test docs/screenshot-admin.png."""

import datetime as dt
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

CHROMIUM = os.environ.get("FLASHBID_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = processes.ROOT / "var" / "test-artifacts"
DOCS_SCREENSHOT = processes.ROOT / "docs" / "screenshot-session.png"
DOCS_ADMIN_SCREENSHOT = processes.ROOT / "docs" / "screenshot-admin.png"
PASSWORD = "s3cret-pass-123"
DESKTOP = {"width": 1100, "height": 900}
# How many requests the page has sent to URLs containing a string (resource timing).
FETCHES = "(part => performance.getEntriesByType('resource').filter(e => e.name.includes(part)).length)"

if not Path(CHROMIUM).exists():
    pytest.fail(f"no Chromium at {CHROMIUM}: run the suite through deploy/test.sh, which installs Debian's chromium",
                pytrace=False)


@pytest.fixture
def server(started) -> str:
    """daphne + a Celery worker + beat, persisting and settling every second. Returns the base URL."""
    env = {"PERSIST_INTERVAL_SECONDS": "1", "SETTLE_INTERVAL_SECONDS": "1"}
    started(processes.celery_worker, **env)
    started(processes.celery_beat, **env)
    port = processes.free_port()
    started(processes.daphne, port, **env)
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def chromium():
    """Call to launch the browser, after the test's database work: Playwright's sync API runs an
    event loop in this thread from then on, and Django refuses ORM calls there."""
    running = []

    def launch():
        playwright = sync_playwright().start()
        running.append(playwright.stop)
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        running.append(browser.close)
        return browser

    yield launch
    for close in reversed(running):
        close()


def wait_for_fetches(page: Page, part: str, count: int, timeout: float) -> None:
    """Until the page has sent `count` requests to URLs containing `part`. Polled from here:
    wait_for_function evaluates its expression inside the page, which the pages' CSP forbids."""
    deadline = time.monotonic() + timeout
    while (sent := page.evaluate(f"{FETCHES}({part!r})")) < count:
        assert time.monotonic() < deadline, f"{sent} requests to {part} within {timeout} s, expected {count}"
        page.wait_for_timeout(100)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def expect_live(page: Page, timeout: float = 10_000) -> None:
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=timeout)


def bid(page: Page, price: str) -> None:
    page.fill("#bid-price", price)
    page.click("#bid-submit")


def expect_bid_error(page: Page, code: str, text: str) -> None:
    error = page.locator("#bid-error")
    expect(error).to_have_attribute("data-code", code)
    expect(error).to_contain_text(text)


def log_in(page: Page, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(f"{base}{next_path}")


def register(http: httpx.Client, username: str) -> str:
    """A bidder registered through the API (hashed by the server's own hasher, so the pages' login
    works; the tests' own users carry the fast test hasher). Returns the access token."""
    response = http.post("/api/auth/register", json={"username": username, "email": f"{username}@example.test",
                                                      "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def admin_session(base: str, admin_token: str, product_name: str, *, ends_in: float, **terms) -> dict:
    """A session opened a minute ago through the admin API (inventory 1, floor 10.00), ending in
    `ends_in` seconds; `terms` adds or overrides fields (soft close)."""
    now = timezone.now()
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {admin_token}"}) as http:
        product = http.post("/api/admin/products", json={"name": product_name}).json()
        response = http.post("/api/admin/sessions", json={
            "product_id": product["id"], "upset_price": "10.00", "inventory": 1, "alpha": 1.0,
            "start_time": (now - dt.timedelta(seconds=60)).isoformat(),
            "end_time": (now + dt.timedelta(seconds=ends_in)).isoformat(), **terms})
    assert response.status_code == 201, response.text
    return response.json()


def api_bid(http: httpx.Client, session_id, token: str, price: str) -> dict:
    response = http.post(f"/api/sessions/{session_id}/bids", json={"price": price},
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_visitor_registers_bids_and_sees_a_rival_outbid_them_live(server, chromium, make_session, make_user,
                                                                   token_for):
    session = make_session(inventory=1, upset_price="10.00", alpha=1.0, beta=0.0, gamma=0.0)
    session.product.name, session.product.description = "Vintage film camera", "35 mm rangefinder, serviced."
    session.product.save()
    others = [token_for(make_user(username=name)) for name in ("maria", "kenji", "sam")]
    path = f"/sessions/{session.pk}/"
    browser = chromium()
    with httpx.Client(base_url=server, timeout=10) as http:
        register(http, "rival")
        for n, token in enumerate(others):
            api_bid(http, session.pk, token, f"1{n + 1}.50")

    page = browser.new_context(viewport=DESKTOP).new_page()
    page.goto(server + path)
    expect_live(page)
    expect(page.locator("#total-bidders")).to_have_text("3")
    expect(page.locator("#bid-form")).to_have_count(0)  # a visitor watches; bidding needs an account

    page.click("text=create an account")
    page.fill("#id_username", "alice")
    page.fill("#id_email", "alice@example.test")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_password_again", PASSWORD)
    page.click("#register-form button[type=submit]")
    expect(page).to_have_url(server + path)
    expect(page.get_by_test_id("username")).to_have_text("alice")
    expect_live(page)

    bid(page, "abc")
    expect_bid_error(page, "invalid_price", "Enter a price like 123.45")
    bid(page, "5")
    expect_bid_error(page, "below_upset_price", "Bids start at the floor price of 10.00 USD.")
    bid(page, "20.00")
    expect(page.locator("#bid-ok")).to_contain_text("Bid of 20.00 USD accepted.")
    expect(page.locator("#bid-error")).to_be_hidden()
    expect(page.locator("#my-rank")).to_have_text("1")
    expect(page.locator("#my-winning")).to_have_text("Winning")
    bid(page, "15.00")
    expect_bid_error(page, "not_higher", "higher than your current bid of 20.00 USD")

    rival_page = browser.new_context(viewport=DESKTOP).new_page()
    log_in(rival_page, server, "rival", path)
    expect_live(rival_page)
    bid(rival_page, "25.00")
    expect(rival_page.locator("#my-rank")).to_have_text("1")
    outbid_at = time.monotonic()

    # The first page learns it without a reload: pushed over the socket within 2 s.
    expect(page.locator("#my-rank")).to_have_text("2", timeout=2_000)
    assert time.monotonic() - outbid_at < 2.5  # expect's own clock starts a little later
    expect(page.locator("#my-winning")).to_contain_text("Outbid")
    expect(page.locator("#board-top tbody tr").first).to_contain_text("rival")
    expect(page.locator("#total-bidders")).to_have_text("5")
    expect(page.locator("#highest-price")).to_have_text("25.00 USD")

    page.click("#full-board summary")
    expect(page.locator("#board-page tbody tr")).to_have_count(5)
    expect(page.locator("#page-info")).to_contain_text("Page 1 of 1")
    shot = screenshot(page, "session-outbid")
    if os.environ.get("FLASHBID_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.write_bytes(shot.read_bytes())


def test_soft_close_extends_the_countdown_and_an_outbid_bidder_is_told_with_the_price_to_win(
        server, chromium, make_user, token_for):
    """A session with soft close ends in 15 s: each winning bid in the window moves the end, and the
    countdown says so; the bidder sees the price to win next to the bid box, is asked to confirm a
    bid above 5x the floor, and is told prominently when a rival outbids them; the settlement comes
    after the effective end, with the late bid."""
    admin_token = token_for(make_user(is_staff=True))
    rival_token = token_for(make_user(username="sniper"))
    browser = chromium()
    with httpx.Client(base_url=server, timeout=10) as http:
        register(http, "carol")
    page = browser.new_context(viewport=DESKTOP).new_page()
    log_in(page, server, "carol", "/")
    session = admin_session(server, admin_token, "Signed first edition", ends_in=15, extend_window_seconds=60,
                            extend_by_seconds=18)
    scheduled_end = dt.datetime.fromisoformat(session["end_time"])
    assert session["extend_window_seconds"] == 60 and session["scheduled_end_time"] == session["end_time"]

    page.goto(f"{server}/sessions/{session['id']}/")
    expect_live(page)
    expect(page.locator("#soft-close-rule")).to_contain_text("in the last 60 s moves the end to 18 s after it")
    hint = page.locator("#price-hint")
    expect(hint).to_have_text("Bid at least 10.00 USD to be winning now.")  # no bids yet: the floor

    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    bid(page, "60")  # more than 5x the floor: asked first, and refused here
    expect(page.locator("#bid-price")).to_have_value("60")
    assert dialogs and "more than 5 times the floor price (10.00 USD)" in dialogs[0]
    expect(page.locator("#my-none")).to_be_visible()  # nothing was sent

    bid(page, "20.00")
    expect(page.locator("#bid-ok")).to_contain_text("Bid of 20.00 USD accepted.")
    expect(hint).to_have_text("You are winning now.")
    extended = page.locator("#extended")
    expect(extended).to_contain_text("Extended by")  # 18 s after the bid is past the scheduled end
    expect(page.locator("#countdown")).to_contain_text("Closes in")

    with httpx.Client(base_url=server, timeout=10) as http:
        rival = api_bid(http, session["id"], rival_token, "30.00")
    notice = page.locator("#you-notice")
    expect(notice).to_have_attribute("data-kind", "outbid", timeout=2_500)
    expect(notice).to_contain_text("You have been outbid. Bid at least 30.01 USD to be winning again.")
    expect(hint).to_have_text("Bid at least 30.01 USD to be winning now.")
    expect(page.locator("#bid-price")).to_have_attribute("placeholder", "at least 30.01")
    expect(page.locator("#my-winning")).to_contain_text("Outbid")
    shot = screenshot(page, "session-soft-close-outbid")
    if os.environ.get("FLASHBID_DOCS_SCREENSHOT"):
        (processes.ROOT / "docs" / "screenshot-soft-close.png").write_bytes(shot.read_bytes())

    # The effective end (the rival's bid + 18 s) is after the scheduled one; the results come after it.
    rival_end = dt.datetime.fromisoformat(rival["accepted_at"]) + dt.timedelta(seconds=18)
    assert rival_end > scheduled_end
    left = (rival_end - timezone.now()).total_seconds()
    expect(page.locator("#final-price")).to_contain_text("Final price 30.00 USD", timeout=(left + 20) * 1000)
    expect(page.locator("#my-outcome")).to_contain_text("You did not win this time.")
    with httpx.Client(base_url=server, timeout=10) as http:
        settled = http.get(f"/api/sessions/{session['id']}").json()
    assert dt.datetime.fromisoformat(settled["end_time"]) == rival_end
    assert settled["scheduled_end_time"] == session["scheduled_end_time"]


def test_on_a_phone_a_bidder_has_the_bid_bar_at_hand_and_every_number_reads_alike(server, chromium, make_session,
                                                                                   make_user, token_for):
    """390x844: the price box sits in a bar at the bottom of the screen without scrolling; the
    bidder's weight is shown; prices carry the currency and grouping, scores four decimals, times
    their zone; a bidder without a bid costs no bids/me request (and so no 404) while the socket is
    live: the standing comes over the socket."""
    session = make_session(inventory=1, upset_price="1000.00", alpha=1.0, beta=0.0, gamma=2.0)
    rival = token_for(make_user(username="rival", weight=1.5))
    browser = chromium()
    with httpx.Client(base_url=server, timeout=10) as http:
        register(http, "phoebe")
        api_bid(http, session.pk, rival, "1234.50")
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    log_in(page, server, "phoebe", f"/sessions/{session.pk}/")
    expect_live(page)
    box = page.locator("#bid-price").bounding_box()
    assert box and box["y"] + box["height"] <= 844, box  # on screen without scrolling
    expect(page.locator("#bid-bar")).to_have_css("position", "fixed")
    expect(page.locator("#my-weight")).to_have_text("1.0")
    expect(page.locator("#highest-price")).to_have_text("1,234.50 USD")
    expect(page.locator("#board-top tbody tr").first).to_contain_text("1,237.5000")  # 1234.50 + 2 x 1.5
    expect(page.locator("#closes")).to_contain_text("UTC")
    expect(page.locator("#price-hint")).to_contain_text("Bid at least 1,235.51 USD")  # + 2 x 1.0 beats 1,237.5
    assert page.evaluate(f"{FETCHES}('/bids/me')") == 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "wider than the phone"
    screenshot(page, "session-phone-bidder")
    if os.environ.get("FLASHBID_DOCS_SCREENSHOT"):  # the phone's screen as the bidder sees it, bar at the bottom
        page.screenshot(path=str(processes.ROOT / "docs" / "screenshot-phone.png"))


def test_with_the_socket_down_the_page_polls_meta_first_and_still_updates(server, chromium, make_session,
                                                                          make_user, token_for):
    session = make_session(inventory=2)
    rival_token = token_for(make_user(username="rival"))
    browser = chromium()
    # A phone-sized viewer.
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    sockets, down = [], {"now": False}

    def route_socket(ws) -> None:
        if down["now"]:
            ws.close(code=1011, reason="test: the socket is down")
        else:
            ws.connect_to_server()
            sockets.append(ws)

    page.route_web_socket(re.compile(r"/ws/sessions/"), route_socket)
    page.goto(f"{server}/sessions/{session.pk}/")
    expect_live(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "wider than the phone"

    down["now"] = True
    for ws in sockets:
        ws.close(code=1011, reason="test: the socket is down")
    status = page.locator("#live-status")
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status).to_contain_text("reconnecting")

    # Polling is meta-first: the meta is asked again and again, the board only when it changed.
    wait_for_fetches(page, "/leaderboard/meta", 2, timeout=10)
    boards_before = page.evaluate(f"{FETCHES}('/leaderboard?')")
    wait_for_fetches(page, "/leaderboard/meta", 4, timeout=15)
    assert page.evaluate(f"{FETCHES}('/leaderboard?')") == boards_before, "board fetched without a version change"

    with httpx.Client(base_url=server, timeout=10) as http:
        api_bid(http, session.pk, rival_token, "42.00")
    expect(page.locator("#board-top tbody tr").first).to_contain_text("rival", timeout=8_000)
    expect(page.locator("#highest-price")).to_have_text("42.00 USD")
    expect(status).to_have_attribute("data-state", "reconnecting")
    screenshot(page, "session-phone-polling")

    down["now"] = False  # the socket comes back: reconnected with backoff, live again
    expect_live(page, timeout=30_000)


def test_the_page_shows_the_results_when_the_session_ends(server, chromium, make_user, token_for):
    admin_token = token_for(make_user(is_staff=True))
    rival_token = token_for(make_user(username="rival"))
    browser = chromium()
    with httpx.Client(base_url=server, timeout=10) as http:
        register(http, "winner")
    page = browser.new_context(viewport=DESKTOP).new_page()
    log_in(page, server, "winner", "/")

    session = admin_session(server, admin_token, "Last-minute lamp", ends_in=10)
    session_id, end = session["id"], dt.datetime.fromisoformat(session["end_time"])

    page.goto(f"{server}/sessions/{session_id}/")
    expect_live(page)
    bid(page, "40.00")
    expect(page.locator("#my-rank")).to_have_text("1")
    with httpx.Client(base_url=server, timeout=10) as http:
        api_bid(http, session_id, rival_token, "30.00")

    left = (end - timezone.now()).total_seconds()
    outcome = page.locator("#my-outcome")
    expect(outcome).to_contain_text("You won a unit (rank 1) at the final price of 40.00 USD",
                                    timeout=(left + 20) * 1000)
    expect(page.locator("#final-price")).to_contain_text("Final price 40.00 USD")
    expect(page.locator("#status-badge")).to_have_text("settled")
    expect(page.locator("#bid-submit")).to_be_disabled()
    screenshot(page, "session-results")

    page.click("text=Open the results page")
    expect(page.locator("#my-outcome")).to_contain_text("You won a unit (rank 1)")
    expect(page.locator("#winners tbody tr")).to_have_count(1)
    screenshot(page, "results-page")

    page.click("text=All sessions")
    expect(page.locator("#sessions-settled")).to_contain_text("Last-minute lamp")
    screenshot(page, "session-list")


def test_the_pages_the_admin_and_the_api_docs_run_under_their_policy_with_nothing_from_elsewhere(
        server, chromium, make_session):
    """Content-Security-Policy holds in a real browser: no page, admin screen or Swagger UI breaks a
    directive (each violation is reported to the page), and nothing is fetched from another host
    (every such request is refused here, as it would be offline)."""
    from accounts.models import User

    session = make_session()
    with httpx.Client(base_url=server, timeout=10) as http:
        register(http, "boss")
    User.objects.filter(username="boss").update(is_staff=True, is_superuser=True)
    browser = chromium()
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.add_init_script("window.__violations = [];"
                         "document.addEventListener('securitypolicyviolation',"
                         " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
    elsewhere = []

    def only_ours(route) -> None:
        if route.request.url.startswith(server):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_ours)
    violations = []

    def visit(path: str, ready) -> None:
        page.goto(server + path)
        ready()
        violations.extend(f"{path}: {v}" for v in page.evaluate("window.__violations"))

    visit(f"/sessions/{session.pk}/", lambda: expect_live(page))  # its script, its socket, its fetches
    visit("/register/", lambda: expect(page.locator("#register-form")).to_be_visible())
    visit("/api/docs", lambda: (expect(page.locator(".swagger-ui .info .title")).to_contain_text("FlashBid API"),
                                expect(page.locator(".opblock").first).to_be_visible()))
    visit("/admin/login/", lambda: expect(page.locator("#login-form")).to_be_visible())
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    visit("/admin/accounts/user/", lambda: expect(page.locator("#result_list")).to_be_visible())
    screenshot(page, "admin-under-csp")
    assert violations == []
    assert elsewhere == []


def test_the_admins_session_list_shows_the_end_and_the_final_price_at_1280_px(started, chromium, make_session):
    """The columns an admin looks for first fit a 1280 px screen, beside the admin's sidebars,
    without scrolling sideways; the status is the clock's."""
    from accounts.models import User
    from auctions import live, settlement, verification
    from auctions.models import BiddingSession
    from tests import bidding

    port = processes.free_port()
    started(processes.daphne, port)
    server = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=server, timeout=10) as http:
        register(http, "boss")
    User.objects.filter(username="boss").update(is_staff=True, is_superuser=True)
    make_session(starts_in=3600, inventory=5)
    make_session(starts_in=-600, lasts=7200, extend_window_seconds=30, extend_by_seconds=60)
    settled = make_session(starts_in=-7200, lasts=10_800, inventory=2)
    bidding.place(settled.pk, [(u, [p]) for u, p in zip(bidding.bidders(4), ["31.50", "44.00", "27.75", "39.90"],
                                                        strict=True)])
    ended = timezone.now()
    BiddingSession.objects.filter(pk=settled.pk).update(end_time=ended, scheduled_end_time=ended)
    live.params_store(BiddingSession.objects.get(pk=settled.pk))
    settlement.session_settle(session_id=str(settled.pk))
    verification.session_audit_record(session_id=settled.pk)
    for n, session in enumerate(BiddingSession.objects.select_related("product")):
        session.product.name = ["Aurora headphones", "Nimbus e-bike", "Vintage film camera"][n % 3]
        session.product.save()

    browser = chromium()
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    page.goto(f"{server}/admin/login/?next=/admin/auctions/biddingsession/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    expect(page.locator("#result_list")).to_be_visible()
    expect(page.locator("#result_list td.field-final_price").filter(has_text="39.90")).to_have_count(1)
    expect(page.locator("#result_list td.field-state").filter(has_text="Settled")).to_have_count(1)
    expect(page.locator("#result_list td.field-checks").filter(has_text="audited")).to_have_count(1)
    for scroller in ("document.documentElement", "document.querySelector('#changelist .results')"):
        widths = page.evaluate(f"[{scroller}.scrollWidth, {scroller}.clientWidth]")
        assert widths[0] <= widths[1], f"{scroller} scrolls sideways: {widths}"
    shown = page.locator("#changelist .results").bounding_box()
    for column in ("end", "final_price"):
        box = page.locator(f"#result_list th.column-{column}").bounding_box()
        assert box and box["x"] + box["width"] <= shown["x"] + shown["width"], (column, box, shown)
    shot = ARTIFACTS / "admin-sessions.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    if os.environ.get("FLASHBID_DOCS_SCREENSHOT"):
        DOCS_ADMIN_SCREENSHOT.write_bytes(shot.read_bytes())
