"""The audit trail (history.selectors.audit_trail, GET /api/admin/audit, the admin's History page):
who changed an outcome-changing field, when, from what to what, whichever path made the change."""

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from auctions.models import BiddingSession

pytestmark = pytest.mark.django_db(transaction=True)


def _trail(api, headers, model: str, object_id) -> list[dict]:
    response = async_to_sync(api.get)(f"/api/admin/audit?model={model}&id={object_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_weight_set_through_the_api_and_in_a_shell_is_on_the_trail_with_who_did_it(api, make_user, auth_header):
    admin = make_user(is_staff=True, username="alice-admin")
    bidder = make_user(weight=1.0)
    headers = auth_header(admin)
    patched = async_to_sync(api.patch)(f"/api/admin/users/{bidder.pk}", json={"weight": 2.5}, headers=headers)
    assert patched.status_code == 200
    User.objects.filter(pk=bidder.pk).update(is_active=False)  # a shell: no actor
    User.objects.filter(pk=bidder.pk).update(email="new@example.test")  # not outcome-changing: no entry

    trail = _trail(api, headers, "user", bidder.pk)

    assert [(c["action"], c["actor"], c["changes"]) for c in trail] == [
        ("update", None, {"is_active": [True, False]}),
        ("update", "alice-admin", {"weight": [1.0, 2.5]}),
        ("create", None, {"weight": [None, 1.0], "is_admin": [None, False], "is_active": [None, True]}),
    ]
    assert trail[0]["at"] >= trail[1]["at"] >= trail[2]["at"]


def test_session_terms_changed_in_the_admin_are_on_the_trail_and_its_history_page(api, client, make_user,
                                                                                   make_session, auth_header):
    admin = make_user(is_staff=True, is_superuser=True, username="bob-admin")
    session = make_session(upset_price="10.00", inventory=3, starts_in=600)  # not started: terms editable
    client.force_login(admin)
    change_url = reverse("admin:auctions_biddingsession_change", args=[session.pk])
    form = client.get(change_url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data.update({"upset_price": "12.00", "inventory": 4, "start_time_0": session.start_time.strftime("%Y-%m-%d"),
                 "start_time_1": session.start_time.strftime("%H:%M:%S"),
                 "scheduled_end_time_0": session.end_time.strftime("%Y-%m-%d"),
                 "scheduled_end_time_1": session.end_time.strftime("%H:%M:%S"),
                 "rankings-TOTAL_FORMS": 0, "rankings-INITIAL_FORMS": 0})
    data = {k: v for k, v in data.items()
            if v is not None and k not in ("start_time", "scheduled_end_time", "hard_end_time")}
    saved = client.post(change_url, data)
    assert saved.status_code == 302, saved.content.decode()[:2000]

    trail = _trail(api, auth_header(admin), "session", session.pk)
    assert trail[0]["actor"] == "bob-admin" and trail[0]["action"] == "update"
    assert trail[0]["changes"]["upset_price"] == ["10.00", "12.00"] and trail[0]["changes"]["inventory"] == [3, 4]
    page = client.get(reverse("admin:auctions_biddingsession_history", args=[session.pk])).content.decode()
    assert "bob-admin" in page and "12.00" in page


def test_an_unknown_id_has_an_empty_trail_and_a_bad_model_is_refused(api, make_user, auth_header):
    headers = auth_header(make_user(is_staff=True))
    assert _trail(api, headers, "session", "0b0e7c4e-4a5c-4b8e-9d43-1f6c2d7e8a90") == []
    assert _trail(api, headers, "user", "not-a-uuid") == []
    refused = async_to_sync(api.get)("/api/admin/audit?model=bid&id=1", headers=headers)
    assert refused.status_code == 422
    bidder = async_to_sync(api.get)("/api/admin/audit?model=user&id=1", headers=auth_header(make_user()))
    assert bidder.status_code == 403


def test_moving_a_sessions_end_with_update_is_recorded(api, make_user, make_session, auth_header):
    session = make_session()
    later = session.end_time + dt.timedelta(hours=1)
    BiddingSession.objects.filter(pk=session.pk).update(end_time=later, scheduled_end_time=later)
    trail = _trail(api, auth_header(make_user(is_staff=True)), "session", session.pk)
    assert "end_time" not in trail[0]["changes"]  # the effective end is not a term
    old, new = trail[0]["changes"]["scheduled_end_time"]
    assert dt.datetime.fromisoformat(new) == later and dt.datetime.fromisoformat(old) == session.end_time
    assert timezone.now() - dt.datetime.fromisoformat(trail[0]["at"]) < dt.timedelta(minutes=1)
