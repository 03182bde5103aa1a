"""The Django admin (auctions.admin, and every other registered model): each changelist and change
page renders for a superuser; the session list shows bidders and top price; staff only."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from auctions.models import Bid, BidEvent, Ranking

pytestmark = pytest.mark.django_db


@pytest.fixture
def populated(make_user, make_session):
    user = make_user()
    session = make_session()
    now = timezone.now()
    Bid.objects.create(session=session, bidder=user, price="12.00", score=12.0, seq=1, accepted_at=now)
    BidEvent.objects.create(session=session, bidder=user, price="12.00", score=12.0, seq=1, weight=1.0,
                            accepted_at=now)
    Ranking.objects.create(session=session, bidder=user, rank=1, price="12.00", score=12.0, seq=1, is_winner=True)
    Group.objects.create(name="ops")


def test_every_admin_changelist_and_change_page_renders(client, admin_user, populated):
    client.force_login(admin_user)
    assert admin.site._registry, "no models registered"
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(changelist)
        assert response.status_code == 200, changelist
        response = client.get(changelist, {"q": "x"})
        assert response.status_code == 200, changelist
        obj = model.objects.first()
        assert obj is not None, f"no {meta.model_name} row to open"
        change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
        assert client.get(change).status_code == 200, change


def test_session_changelist_shows_bidder_count_and_top_price(client, admin_user, populated):
    client.force_login(admin_user)
    page = client.get(reverse("admin:auctions_biddingsession_changelist")).content.decode().lower()
    assert "bidders" in page and "top price" in page and "12.00" in page


def test_admin_requires_staff(client, make_user):
    client.force_login(make_user())
    response = client.get(reverse("admin:auctions_biddingsession_changelist"))
    assert response.status_code == 302


def test_a_started_sessions_scoring_terms_are_read_only_and_its_end_stays_editable(client, admin_user,
                                                                                  make_session):
    started, scheduled = make_session(starts_in=-60), make_session(starts_in=600)
    client.force_login(admin_user)

    def editable(session) -> set[str]:
        page = client.get(reverse("admin:auctions_biddingsession_change", args=[session.pk]))
        return set(page.context["adminform"].form.fields)

    fixed = {"upset_price", "inventory", "alpha", "beta", "gamma", "start_time", "extend_window_seconds",
             "extend_by_seconds", "hard_end_time"}
    assert not fixed & editable(started) and "scheduled_end_time" in editable(started)
    assert "end_time" not in editable(started)  # the effective end is the engine's
    assert fixed <= editable(scheduled)
