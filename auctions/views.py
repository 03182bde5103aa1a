"""The bidder pages: the session list, a session's live page, its results, a bidder's own bids.
The pages render what PostgreSQL knows (My bids also asks Redis for the live standing); everything
live on a session's page (board, my standing, bids) goes through the JSON API and the WebSocket
from static/flashbid/session.js."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from auctions import selectors
from auctions.models import BiddingSession, ProductPicture, SessionStatus

# The list's sections, in page order.
LIST_SECTIONS = (
    (SessionStatus.ACTIVE, "Live now"),
    (SessionStatus.SCHEDULED, "Coming up"),
    (SessionStatus.ENDED, "Ended, settling"),
    (SessionStatus.SETTLED, "Settled"),
)


def _session_or_404(session_id) -> BiddingSession:
    session = selectors.session_get(session_id=session_id)
    if session is None:
        raise Http404("No such session.")
    return session


def _back_here(request: HttpRequest, page: str) -> str:
    """The URL of the login or register page, coming back to this page afterwards."""
    return f"{reverse(page)}?{urlencode({'next': request.get_full_path()})}"


def session_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    grouped: dict[str, list[BiddingSession]] = {status: [] for status, _ in LIST_SECTIONS}
    for session in selectors.sessions_list(limit=200):
        session.live_status = session.current_status(now)
        grouped[session.live_status].append(session)
    grouped[SessionStatus.ACTIVE].sort(key=lambda s: s.end_time)  # ending soonest first
    grouped[SessionStatus.SCHEDULED].sort(key=lambda s: s.start_time)  # starting soonest first
    sections = [(status, title, grouped[status]) for status, title in LIST_SECTIONS]
    return render(request, "auctions/session_list.html", {"sections": sections, "server_time": now})


def session_detail(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(session_id)
    now = timezone.now()
    api = f"/api/sessions/{session.pk}"
    user = request.user
    config = {
        "session_id": str(session.pk),
        "status": session.current_status(now),
        "start_time": session.start_time.isoformat(),
        "end_time": session.end_time.isoformat(),
        "scheduled_end_time": session.scheduled_end_time.isoformat(),
        "server_time": now.isoformat(),
        "upset_price": str(session.upset_price),
        "inventory": session.inventory,
        "user": {"id": str(user.pk), "username": user.username, "weight": user.weight}
        if user.is_authenticated else None,
        "currency": settings.CURRENCY,
        "ws_path": f"/ws/sessions/{session.pk}/",
        "csrf_cookie": settings.CSRF_COOKIE_NAME,
        "urls": {
            "bids": f"{api}/bids",
            "my_bid": f"{api}/bids/me",
            "leaderboard": f"{api}/leaderboard",
            "meta": f"{api}/leaderboard/meta",
            "results": f"{api}/results",
            "results_page": reverse("session-results", args=[session.pk]),
            "login": _back_here(request, "login"),
        },
    }
    return render(request, "auctions/session_detail.html", {
        "session": session, "status": config["status"], "config": config, "server_time": now,
        "login_url": config["urls"]["login"], "currency": settings.CURRENCY,
        "register_url": _back_here(request, "register"),
    })


def session_results(request: HttpRequest, session_id) -> HttpResponse:
    session = _session_or_404(session_id)
    now = timezone.now()
    status = session.current_status(now)
    results = selectors.results_get(session_id=session.pk) if status == SessionStatus.SETTLED else None
    mine = None
    if results is not None and request.user.is_authenticated:
        mine = selectors.bidder_ranking(session_id=session.pk, bidder_id=request.user.pk)
    return render(request, "auctions/session_results.html", {
        "session": session, "status": status, "results": results, "mine": mine, "server_time": now,
        "results_api": f"/api/sessions/{session.pk}/results",
        "log_api": f"/api/sessions/{session.pk}/log",
    })


@login_required
def my_bids(request: HttpRequest) -> HttpResponse:
    """The sessions the signed-in bidder bid in: their price and rank now (live while open), what
    they won and at what final price."""
    standings = selectors.bidder_standings(bidder_id=request.user.pk)
    won = [s for s in standings if s.status == SessionStatus.SETTLED and s.is_winning]
    return render(request, "auctions/my_bids.html", {"standings": standings, "won": won,
                                                      "server_time": timezone.now()})


def product_picture(request: HttpRequest, product_id: int) -> HttpResponse:
    """A product's picture (stored in its row, re-encoded on upload: auctions.services). Cached by
    browsers and revalidated by its version."""
    found = (ProductPicture.objects.filter(product_id=product_id)
             .values("data", "content_type", "product__picture_updated_at").first())
    if found is None:
        raise Http404("No picture.")
    etag = f'"{int(found["product__picture_updated_at"].timestamp() * 1_000_000)}"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponse(status=304, headers={"ETag": etag})
    return HttpResponse(bytes(found["data"]), content_type=found["content_type"],
                        headers={"ETag": etag, "Cache-Control": "public, max-age=300"})
