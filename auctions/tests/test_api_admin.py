"""The admin API (auctions.api's admin router): who may call it (anonymous 401, bidder 403, admin
2xx), what it does, and what it refuses."""

import datetime as dt
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.user_cache import local_clear
from auctions import live
from auctions.models import BiddingSession
from tests.assertions import assert_error

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin(make_user):
    return make_user(is_staff=True)


@pytest.fixture
def product(make_session):
    return make_session().product


@pytest.fixture
def active_session(make_session):
    return make_session()


def session_payload(product, **overrides) -> dict:
    start = timezone.now() + dt.timedelta(minutes=5)
    payload = {"product_id": product.pk, "upset_price": "10.00", "inventory": 3, "alpha": 1.0, "beta": 0.0,
               "gamma": 0.0, "start_time": start.isoformat(), "end_time": (start + dt.timedelta(hours=1)).isoformat()}
    payload.update(overrides)
    return payload


def admin_calls(product, session, user) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", "/api/admin/products", {"name": "Lamp", "description": "A lamp"}),
        ("POST", "/api/admin/sessions", session_payload(product)),
        ("PATCH", f"/api/admin/users/{user.pk}", {"weight": 2.5}),
        ("POST", f"/api/admin/sessions/{session.pk}/settle", None),
    ]


ENDPOINTS = ["create product", "create session", "set weight", "settle"]


@pytest.mark.parametrize("endpoint", range(len(ENDPOINTS)), ids=ENDPOINTS)
async def test_admin_endpoint_as_anonymous_is_not_authenticated(api, product, ended_session, bidder, endpoint):
    method, url, body = admin_calls(product, ended_session, bidder)[endpoint]
    response = await api.request(method, url, json=body)
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize("endpoint", range(len(ENDPOINTS)), ids=ENDPOINTS)
async def test_admin_endpoint_as_anonymous_with_a_bad_body_is_still_not_authenticated(api, product, ended_session,
                                                                                       bidder, endpoint):
    method, url, _ = admin_calls(product, ended_session, bidder)[endpoint]
    response = await api.request(method, url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize("endpoint", range(len(ENDPOINTS)), ids=ENDPOINTS)
async def test_admin_endpoint_as_a_bidder_is_forbidden(api, product, ended_session, bidder, auth_header, endpoint):
    method, url, body = admin_calls(product, ended_session, bidder)[endpoint]
    response = await api.request(method, url, json=body, headers=auth_header(bidder))
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("endpoint", range(len(ENDPOINTS)), ids=ENDPOINTS)
async def test_admin_endpoint_with_a_revoked_admin_token_is_not_authenticated(api, product, ended_session, bidder,
                                                                                admin, auth_header, endpoint):
    headers = auth_header(admin)

    def demote():
        admin.is_active = False
        admin.save()

    await sync_to_async(demote)()
    local_clear()
    method, url, body = admin_calls(product, ended_session, bidder)[endpoint]
    assert_error(await api.request(method, url, json=body, headers=headers), 401, "not_authenticated")


async def test_admin_creates_a_product(api, admin, auth_header):
    response = await api.post("/api/admin/products", json={"name": "Lamp", "description": "A lamp"},
                              headers=auth_header(admin))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Lamp" and body["description"] == "A lamp" and isinstance(body["id"], int)


async def test_admin_creates_a_session(api, admin, auth_header, product):
    response = await api.post("/api/admin/sessions", json=session_payload(product), headers=auth_header(admin))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["product"]["id"] == product.pk
    assert body["upset_price"] == "10.00"
    assert body["status"] == "scheduled"
    assert body["final_price"] is None


async def test_a_created_session_carries_its_soft_close_terms(api, admin, auth_header, product):
    payload = session_payload(product)
    hard_end = dt.datetime.fromisoformat(payload["end_time"]) + dt.timedelta(minutes=10)
    response = await api.post("/api/admin/sessions", headers=auth_header(admin), json={
        **payload, "extend_window_seconds": 30, "extend_by_seconds": 60, "hard_end_time": hard_end.isoformat()})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["extend_window_seconds"], body["extend_by_seconds"]) == (30, 60)
    assert dt.datetime.fromisoformat(body["hard_end_time"]) == hard_end
    assert body["scheduled_end_time"] == body["end_time"]
    assert dt.datetime.fromisoformat(body["end_time"]) == dt.datetime.fromisoformat(payload["end_time"])
    listed = (await api.get(f"/api/sessions/{body['id']}")).json()
    assert {k: listed[k] for k in ("scheduled_end_time", "extend_window_seconds", "extend_by_seconds",
                                   "hard_end_time")} == {k: body[k] for k in ("scheduled_end_time",
                                                                               "extend_window_seconds",
                                                                               "extend_by_seconds", "hard_end_time")}


async def test_a_session_without_soft_close_terms_has_it_off(api, admin, auth_header, product):
    response = await api.post("/api/admin/sessions", json=session_payload(product), headers=auth_header(admin))
    body = response.json()
    assert (body["extend_window_seconds"], body["extend_by_seconds"], body["hard_end_time"]) == (0, 0, None)


@pytest.mark.parametrize(("overrides", "words"), [
    ({"extend_window_seconds": -1}, "extend_window_seconds: must be between 0 and 86,400 seconds"),
    ({"extend_window_seconds": 86_401, "extend_by_seconds": 5}, "extend_window_seconds: must be between 0"),
    ({"extend_window_seconds": 1.5, "extend_by_seconds": 5}, "extend_window_seconds"),
    ({"extend_window_seconds": 30}, "extend_by_seconds: must be at least 1 second when extend_window_seconds"),
    ({"extend_window_seconds": 30, "extend_by_seconds": 0}, "extend_by_seconds: must be at least 1 second"),
    ({"extend_by_seconds": -5}, "extend_by_seconds: must be between 0"),
    ({"hard_end_time": "END"}, "hard_end_time: must be after the scheduled end"),
    ({"hard_end_time": "START"}, "hard_end_time: must be after the scheduled end"),
    ({"hard_end_time": "2030-01-01T12:00:00"}, "hard_end_time: needs a time zone"),
    ({"upset_price": "0"}, "upset_price: must be greater than 0"),
    ({"inventory": 0}, "inventory: must be a whole number of units between 1 and 1,000,000"),
], ids=repr)
async def test_bad_session_terms_are_invalid_with_the_rule_in_words(api, admin, auth_header, product, overrides,
                                                                    words):
    payload = session_payload(product)
    for name, value in overrides.items():
        payload[name] = {"END": payload["end_time"], "START": payload["start_time"]}.get(value, value)
    response = await api.post("/api/admin/sessions", json=payload, headers=auth_header(admin))
    assert_error(response, 422, "invalid")
    assert words in response.json()["detail"]
    assert "constraint" not in response.json()["detail"].lower()


async def test_admin_sets_a_bidders_weight(api, admin, bidder, auth_header):
    response = await api.patch(f"/api/admin/users/{bidder.pk}", json={"weight": 2.5}, headers=auth_header(admin))
    assert response.status_code == 200, response.text
    assert response.json()["weight"] == 2.5
    assert response.json()["id"] == str(bidder.pk)


@pytest.mark.parametrize("weight", [-1, 1_000_001, "abc", None, "NaN"])
async def test_admin_weight_out_of_range_is_invalid(api, admin, bidder, auth_header, weight):
    response = await api.patch(f"/api/admin/users/{bidder.pk}", json={"weight": weight}, headers=auth_header(admin))
    assert_error(response, 422, "invalid")


async def test_admin_weight_nan_literal_is_invalid(api, admin, bidder, auth_header):
    response = await api.patch(f"/api/admin/users/{bidder.pk}", content=b'{"weight": NaN}',
                               headers={**auth_header(admin), "Content-Type": "application/json"})
    assert_error(response, 422, "invalid")


async def test_admin_weight_of_an_unknown_user_is_not_found(api, admin, auth_header):
    response = await api.patch(f"/api/admin/users/{uuid.uuid4()}", json={"weight": 2}, headers=auth_header(admin))
    assert_error(response, 404, "not_found")


async def test_admin_weight_of_a_malformed_user_id_is_not_found(api, admin, auth_header):
    response = await api.patch("/api/admin/users/not-a-uuid", json={"weight": 2}, headers=auth_header(admin))
    assert_error(response, 404, "not_found")


async def test_admin_settle_of_an_unended_session_is_session_not_ended(api, admin, auth_header, active_session):
    response = await api.post(f"/api/admin/sessions/{active_session.pk}/settle", headers=auth_header(admin))
    assert_error(response, 409, "session_not_ended")


async def test_admin_settle_of_an_unknown_session_is_not_found(api, admin, auth_header):
    response = await api.post(f"/api/admin/sessions/{uuid.uuid4()}/settle", headers=auth_header(admin))
    assert_error(response, 404, "not_found")


async def test_admin_settle_of_an_ended_session_without_bids_is_ok_with_no_winners(api, admin, auth_header,
                                                                                    ended_session):
    response = await api.post(f"/api/admin/sessions/{ended_session.pk}/settle", headers=auth_header(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session_id"] == str(ended_session.pk)
    assert body["final_price"] is None and body["winners"] == [] and body["total_bidders"] == 0


async def test_admin_settle_of_an_ended_session_with_a_bid_names_the_winner(api, admin, bidder, auth_header,
                                                                            active_session):
    bid = await api.post(f"/api/sessions/{active_session.pk}/bids", json={"price": "42.00"},
                         headers=auth_header(bidder))
    assert bid.status_code == 201, bid.text

    def end_now():
        ended = timezone.now() - dt.timedelta(seconds=1)
        BiddingSession.objects.filter(pk=active_session.pk).update(end_time=ended, scheduled_end_time=ended)
        live.params_store(BiddingSession.objects.get(pk=active_session.pk))

    await sync_to_async(end_now)()
    response = await api.post(f"/api/admin/sessions/{active_session.pk}/settle", headers=auth_header(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["final_price"] == "42.00"
    assert [w["user_id"] for w in body["winners"]] == [str(bidder.pk)]

    again = await api.post(f"/api/admin/sessions/{active_session.pk}/settle", headers=auth_header(admin))
    assert again.status_code == 200 and again.json() == body


# --- Session creation validation -------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"end_time": "2020-01-01T00:00:00+00:00"},  # long past (and before the start)
    {"inventory": 0},
    {"inventory": -1},
    {"inventory": 10**7},
    {"inventory": "many"},
    {"alpha": -1.0},
    {"beta": -0.5},
    {"gamma": -2},
    {"alpha": 1e10},
    {"upset_price": "0"},
    {"upset_price": "0.00"},
    {"upset_price": "-5"},
    {"upset_price": "10.001"},
    {"upset_price": "abc"},
    {"upset_price": "NaN"},
    {"upset_price": "Infinity"},
    {"upset_price": "1000000000.01"},
    {"upset_price": None},
    {"product_id": 999_999_999},
    {"product_id": 10**20},
    {"product_id": -1},
    {"product_id": "abc"},
    {"start_time": "yesterday"},
    {"start_time": "2030-01-01T12:00:00", "end_time": "2030-01-01T13:00:00"},
    {"start_time": None},
], ids=repr)
async def test_admin_session_with_bad_parameters_is_invalid(api, admin, auth_header, product, overrides):
    response = await api.post("/api/admin/sessions", json=session_payload(product, **overrides),
                              headers=auth_header(admin))
    assert_error(response, 422, "invalid")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("field", ["alpha", "beta", "gamma"])
async def test_admin_session_with_a_non_finite_weight_literal_is_invalid(api, admin, auth_header, product, field,
                                                                         literal):
    import json

    payload = session_payload(product)
    payload.pop(field)
    content = json.dumps(payload)[:-1].encode() + b', "' + field.encode() + b'": ' + literal + b"}"
    response = await api.post("/api/admin/sessions", content=content,
                              headers={**auth_header(admin), "Content-Type": "application/json"})
    assert_error(response, 422, "invalid")


async def test_admin_session_missing_fields_is_invalid(api, admin, auth_header):
    assert_error(await api.post("/api/admin/sessions", json={}, headers=auth_header(admin)), 422, "invalid")


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": None},
                                     {"name": "ok", "description": "d" * 10_001}, {"name": "nul\x00byte"},
                                     {"name": "ok", "description": "nul\x00byte"}], ids=repr)
async def test_admin_product_with_bad_input_is_invalid(api, admin, auth_header, payload):
    assert_error(await api.post("/api/admin/products", json=payload, headers=auth_header(admin)), 422, "invalid")


async def test_an_admin_weight_out_of_range_says_the_range_in_words(api, admin, bidder, auth_header):
    response = await api.patch(f"/api/admin/users/{bidder.pk}", json={"weight": 1_000_001}, headers=auth_header(admin))
    assert_error(response, 422, "invalid")
    assert response.json()["detail"] == "weight: must be a number from 0 to 1,000,000."
