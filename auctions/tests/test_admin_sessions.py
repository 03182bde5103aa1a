"""The sessions' admin (auctions.admin.BiddingSessionAdmin) through Django's test client: the terms
refused in words (the API's validation), locked once bidding starts and read-only once ended or
settled, the status by the clock, "Settle now" and the list's columns."""

import datetime as dt
import re

import pytest
from django import forms
from django.urls import reverse
from django.utils import timezone

from auctions import live, settlement
from auctions.models import BiddingSession, Ranking, SessionStatus
from tests import bidding

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:auctions_biddingsession_changelist"


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def change_url(session) -> str:
    return reverse("admin:auctions_biddingsession_change", args=[session.pk])


def form_data(page) -> dict:
    """What the browser would send back for a change or add page, untouched."""
    context = page.context
    data = {}
    for bound in context["adminform"].form:
        value = bound.value()
        if isinstance(bound.field, forms.SplitDateTimeField):
            date, time = bound.field.widget.decompress(value)
            data[f"{bound.html_name}_0"] = date.isoformat() if date else ""
            data[f"{bound.html_name}_1"] = time.strftime("%H:%M:%S") if time else ""
        else:
            data[bound.html_name] = "" if value is None else str(value)
    for inline in context["inline_admin_formsets"]:
        for bound in inline.formset.management_form:
            data[bound.html_name] = bound.value()
    if context.get("loaded_state"):
        data["loaded_state"] = context["loaded_state"]
    return data


def split(moment: dt.datetime) -> tuple[str, str]:
    moment = timezone.localtime(moment)
    return moment.date().isoformat(), moment.strftime("%H:%M:%S")


def errors_of(page) -> str:
    form = page.context["adminform"].form
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


def add_page_data(staff_client, product, **terms) -> dict:
    data = form_data(staff_client.get(reverse("admin:auctions_biddingsession_add")))
    start = timezone.now() + dt.timedelta(hours=1)
    data.update(product=product.pk, upset_price="10.00", inventory="3", alpha="1", beta="0", gamma="0",
                extend_window_seconds="0", extend_by_seconds="0")
    data["start_time_0"], data["start_time_1"] = split(start)
    data["scheduled_end_time_0"], data["scheduled_end_time_1"] = split(start + dt.timedelta(hours=1))
    data.update(terms)
    return data


@pytest.mark.parametrize(("terms", "words"), [
    ({"upset_price": "0"}, "Upset price must be greater than 0"),
    ({"inventory": "0"}, "Inventory must be a whole number of units between 1 and 1,000,000"),
    ({"gamma": "2e9"}, "Gamma must be between 0 and 1e9"),
    ({"extend_window_seconds": "30", "extend_by_seconds": "0"}, "must be at least 1 second when"),
    ({"extend_window_seconds": "100000", "extend_by_seconds": "5"}, "must be between 0 and 86,400 seconds"),
    ({"hard_end_time_0": "2000-01-01", "hard_end_time_1": "00:00:00"}, "must be after the scheduled end"),
], ids=repr)
def test_adding_a_session_with_bad_terms_shows_the_rule_in_words(staff_client, make_session, terms, words):
    product = make_session().product
    before = BiddingSession.objects.count()
    page = staff_client.post(reverse("admin:auctions_biddingsession_add"), add_page_data(staff_client, product,
                                                                                         **terms))
    assert page.status_code == 200
    assert words in errors_of(page), errors_of(page)
    assert "onstraint" not in page.content.decode()
    assert BiddingSession.objects.count() == before


def test_adding_a_session_with_soft_close_saves_it(staff_client, make_session, admin_user):
    product = make_session().product
    data = add_page_data(staff_client, product, extend_window_seconds="30", extend_by_seconds="60")
    page = staff_client.post(reverse("admin:auctions_biddingsession_add"), data)
    assert page.status_code == 302, errors_of(page)
    session = BiddingSession.objects.filter(product=product, extend_window_seconds=30).get()
    assert session.extend_by_seconds == 60 and session.end_time == session.scheduled_end_time
    assert session.created_by == admin_user


def test_a_scheduled_sessions_terms_can_change(staff_client, make_session):
    session = make_session(starts_in=600)
    page = staff_client.get(change_url(session))
    assert "terms-notice" not in page.content.decode()
    data = form_data(page) | {"inventory": "5"}
    assert staff_client.post(change_url(session), data).status_code == 302
    assert BiddingSession.objects.get(pk=session.pk).inventory == 5


def test_a_started_session_says_its_terms_are_fixed(staff_client, make_session):
    page = staff_client.get(change_url(make_session(starts_in=-60)))
    assert "Bidding has started: the scoring terms are fixed" in page.content.decode()


def test_a_started_sessions_scheduled_end_moves_later_but_not_earlier(staff_client, make_session):
    session = make_session(starts_in=-60, lasts=3600)
    data = form_data(staff_client.get(change_url(session)))

    earlier = session.scheduled_end_time - dt.timedelta(minutes=10)
    data["scheduled_end_time_0"], data["scheduled_end_time_1"] = split(earlier)
    page = staff_client.post(change_url(session), data)
    assert page.status_code == 200
    assert "the scheduled end can move later, not earlier" in errors_of(page)
    assert BiddingSession.objects.get(pk=session.pk).end_time == session.end_time

    later = (session.scheduled_end_time + dt.timedelta(minutes=10)).replace(microsecond=0)
    data["scheduled_end_time_0"], data["scheduled_end_time_1"] = split(later)
    page = staff_client.post(change_url(session), data)
    assert page.status_code == 302, errors_of(page)
    stored = BiddingSession.objects.get(pk=session.pk)
    assert stored.scheduled_end_time == later and stored.end_time == later


def test_a_scheduled_end_moved_past_the_hard_end_is_refused_in_words(staff_client, make_session):
    start = timezone.now() - dt.timedelta(minutes=1)
    session = make_session(starts_in=-60, lasts=600, extend_window_seconds=10, extend_by_seconds=10,
                           hard_end_time=start + dt.timedelta(seconds=900))
    data = form_data(staff_client.get(change_url(session)))
    data["scheduled_end_time_0"], data["scheduled_end_time_1"] = split(session.hard_end_time + dt.timedelta(hours=1))
    page = staff_client.post(change_url(session), data)
    assert page.status_code == 200 and "must be after the scheduled end" in errors_of(page)


def test_an_ended_session_is_read_only_and_says_why(staff_client, make_session):
    session = make_session(starts_in=-120, lasts=60)
    page = staff_client.get(change_url(session))
    assert "Ended: bidding is over" in page.content.decode()
    assert not set(page.context["adminform"].form.fields)
    assert 'name="_save"' not in page.content.decode()


def test_a_form_loaded_before_the_end_and_sent_after_it_is_refused(staff_client, make_session):
    session = make_session(starts_in=-60, lasts=3600)
    data = form_data(staff_client.get(change_url(session)))
    later = session.scheduled_end_time + dt.timedelta(minutes=10)
    data["scheduled_end_time_0"], data["scheduled_end_time_1"] = split(later)
    ended = timezone.now() - dt.timedelta(seconds=1)
    BiddingSession.objects.filter(pk=session.pk).update(end_time=ended, scheduled_end_time=ended)
    page = staff_client.post(change_url(session), data)
    assert page.status_code == 200
    assert "This session is ended now (it was active when this page was loaded): nothing was saved" \
        in page.content.decode()
    assert BiddingSession.objects.get(pk=session.pk).end_time == ended


def test_a_settled_session_is_a_record(staff_client, make_session):
    session = make_session(starts_in=-120, lasts=60)
    settlement.session_settle(session_id=str(session.pk))
    page = staff_client.get(change_url(session))
    assert "Settled: this session is a record" in page.content.decode()
    assert not set(page.context["adminform"].form.fields)


def test_the_status_shown_is_the_clocks_not_the_stored_column(staff_client, make_session):
    # Stored "scheduled" (the settlement tick has not refreshed it yet), but started a minute ago.
    session = make_session(starts_in=-60, status=SessionStatus.SCHEDULED)
    upcoming = make_session(starts_in=600)
    listed = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert re.search(r'class="field-state">Active<', listed)
    assert "Active" in staff_client.get(change_url(session)).content.decode()

    active_only = staff_client.get(reverse(CHANGELIST), {"state": "active"}).context["cl"].result_list
    assert session in active_only and upcoming not in active_only


def test_the_list_shows_short_columns_with_the_end_and_the_final_price(staff_client, make_session):
    make_session()
    page = staff_client.get(reverse(CHANGELIST))
    html = page.content.decode()
    columns = re.findall(r'<th scope="col" class="[^"]*column-([a-z_]+)', html)
    assert columns == ["product", "state", "start", "end", "inventory_k", "bidder_count", "top_price",
                       "final_price", "checks"]
    headers = re.findall(r'<div class="text">(?:<a [^>]*>|<span>)([^<]+)',
                         html.split('id="result_list"')[1].split("</thead>")[0])
    assert headers == ["Product", "Status", "Start", "End", "K", "Bidders", "Top price", "Final price", "Checks"]


def _ended_with_bids(make_session, prices):
    """A session that took `prices` through the real engine, then ended (its end moved to now)."""
    session = make_session(starts_in=-60, lasts=3600, inventory=2)
    users = bidding.bidders(len(prices))
    accepted, rejected = bidding.place(session.pk, [(u, [p]) for u, p in zip(users, prices, strict=True)])
    assert len(accepted) == len(prices) and not rejected
    ended = timezone.now()
    BiddingSession.objects.filter(pk=session.pk).update(end_time=ended, scheduled_end_time=ended)
    live.params_store(BiddingSession.objects.get(pk=session.pk))
    return session


def test_settle_now_reports_each_session_and_settles_the_ended_ones(staff_client, make_session):
    ended = _ended_with_bids(make_session, ["30.00", "20.00", "25.00"])
    open_one = make_session(starts_in=-60)
    done = make_session(starts_in=-120, lasts=60)
    settlement.session_settle(session_id=str(done.pk))

    page = staff_client.post(reverse(CHANGELIST), {"action": "settle_now",
                                                   "_selected_action": [ended.pk, open_one.pk, done.pk]},
                             follow=True)
    assert page.status_code == 200
    said = [str(m) for m in page.context["messages"]]
    assert any(f"({ended.pk}): settled: 3 bidder(s), 2 winner(s), final price 25.00" in m for m in said), said
    assert any(f"({open_one.pk}): not ended" in m for m in said), said
    assert any(f"({done.pk}): already settled" in m for m in said), said
    assert BiddingSession.objects.get(pk=ended.pk).status == SessionStatus.SETTLED
    assert Ranking.objects.filter(session=ended, is_winner=True).count() == 2
    assert BiddingSession.objects.get(pk=open_one.pk).status != SessionStatus.SETTLED


def test_settle_now_reports_a_failure_instead_of_an_error_page(staff_client, make_session, monkeypatch):
    session = make_session(starts_in=-120, lasts=60)

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(settlement, "session_settle", broken)
    page = staff_client.post(reverse(CHANGELIST), {"action": "settle_now", "_selected_action": [session.pk]},
                             follow=True)
    assert page.status_code == 200
    assert any(f"({session.pk}): failed" in str(m) for m in page.context["messages"])
