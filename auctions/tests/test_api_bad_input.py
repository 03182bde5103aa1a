"""Bad input at the public API: every rejection is a 4xx with exactly {"detail", "code"}, never a 500."""

import uuid

import jwt
import pytest
from asgiref.sync import sync_to_async

from accounts.tokens import ALGORITHM, token_issue
from accounts.user_cache import local_clear
from tests.assertions import assert_error

pytestmark = pytest.mark.django_db(transaction=True)


def bids_url(session) -> str:
    return f"/api/sessions/{session.pk}/bids"


@pytest.fixture
def bidder(make_user):
    return make_user()


@pytest.fixture
def session(make_session):
    return make_session(upset_price="10.00")


# --- Authentication --------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer ", "Basic x", "garbage", "Bearer garbage",
                                           "Bearer a.b.c", "Token abc"])
async def test_bid_without_a_valid_bearer_header_is_not_authenticated(api, session, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_an_expired_token_is_not_authenticated(api, session, bidder):
    token, _ = token_issue(user_id=str(bidder.pk), token_version=bidder.token_version, ttl_seconds=-10)
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_a_token_signed_by_another_key_is_not_authenticated(api, session, bidder):
    claims = {"sub": str(bidder.pk), "iat": 1, "exp": 4_000_000_000, "ver": bidder.token_version}
    forged = jwt.encode(claims, "not-the-server-key-" * 4, algorithm=ALGORITHM)
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_an_unsigned_none_algorithm_token_is_not_authenticated(api, session, bidder):
    claims = {"sub": str(bidder.pk), "iat": 1, "exp": 4_000_000_000, "ver": bidder.token_version}
    unsigned = jwt.encode(claims, None, algorithm="none")
    response = await api.post(bids_url(session), json={"price": "20.00"},
                              headers={"Authorization": f"Bearer {unsigned}"})
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize("subject", ["not-a-uuid", str(uuid.uuid4())])
async def test_bid_with_a_token_for_no_such_user_is_not_authenticated(api, session, subject):
    token, _ = token_issue(user_id=subject, token_version=0)
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_a_token_issued_before_a_password_change_is_not_authenticated(api, session, bidder,
                                                                                      token_for):
    headers = {"Authorization": f"Bearer {token_for(bidder)}"}
    assert (await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)).status_code == 201

    def change_password():
        bidder.set_password("another-pass-456")
        bidder.save()

    await sync_to_async(change_password)()
    local_clear()  # the in-process auth cache's TTL has run out
    response = await api.post(bids_url(session), json={"price": "30.00"}, headers=headers)
    assert_error(response, 401, "not_authenticated")


async def test_bid_by_a_deactivated_user_is_not_authenticated(api, session, bidder, auth_header):
    headers = auth_header(bidder)
    assert (await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)).status_code == 201

    def deactivate():
        bidder.is_active = False
        bidder.save()

    await sync_to_async(deactivate)()
    local_clear()
    response = await api.post(bids_url(session), json={"price": "30.00"}, headers=headers)
    assert_error(response, 401, "not_authenticated")


# --- Bodies ----------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    b"",
    b"price=20",
    b"{",
    b"[]",
    b"{}",
    b'{"price": null}',
    b'{"price": "abc"}',
    b'{"price": NaN}',
    b'{"price": Infinity}',
    b'{"price": -Infinity}',
    b'{"price": "NaN"}',
    b'{"price": "Infinity"}',
    b'{"price": "-Infinity"}',
    b'{"price": -1}',
    b'{"price": "-1"}',
    b'{"price": 0}',
    b'{"price": "0.00"}',
    b'{"price": 0.001}',
    b'{"price": "0.001"}',
    b'{"price": 1e12}',
    b'{"price": 1e400}',
    b'{"price": "1e12"}',
    b'{"price": "1000000000.01"}',
    b'{"price": true}',
    b'{"price": false}',
    b'{"price": [20]}',
    b'{"price": {"amount": 20}}',
    b'{"price": ""}',
    b'{"price": "  "}',
    b'{"price": "20,00"}',
    b'{"price": "0x14"}',
    b'{"price": "1' + b"0" * 100 + b'"}',
    b'{"price": 1' + b"0" * 5000 + b"}",
    b'"20.00"',
    b"20",
    b"null",
    b"\xff\xfe",
], ids=lambda content: content[:40].decode("latin-1"))
async def test_bid_with_a_malformed_body_is_rejected_as_invalid_price(api, session, bidder, auth_header, content):
    headers = {**auth_header(bidder), "Content-Type": "application/json"}
    response = await api.post(bids_url(session), content=content, headers=headers)
    assert_error(response, 422, "invalid_price")


async def test_bid_with_nan_price_is_rejected_as_invalid_price(api, session, bidder, auth_header):
    response = await api.post(bids_url(session), content=b'{"price": NaN}',
                              headers={**auth_header(bidder), "Content-Type": "application/json"})
    assert_error(response, 422, "invalid_price")


async def test_bid_with_a_one_megabyte_body_is_rejected_as_too_large(api, session, bidder, auth_header):
    content = b'{"price": "20.00", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = await api.post(bids_url(session), content=content,
                              headers={**auth_header(bidder), "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("price", ["10.00", 10, 10.5, "999999999.99", "1000000000", 1000000000, "  25.10 "])
async def test_bid_with_a_valid_price_is_accepted(api, session, bidder, auth_header, price):
    response = await api.post(bids_url(session), json={"price": price}, headers=auth_header(bidder))
    assert response.status_code == 201, response.text


# --- Session state ---------------------------------------------------------------------------

async def test_bid_on_an_unknown_session_is_not_found(api, bidder, auth_header):
    response = await api.post(f"/api/sessions/{uuid.uuid4()}/bids", json={"price": "20.00"},
                              headers=auth_header(bidder))
    assert_error(response, 404, "not_found")


async def test_repeated_bids_on_an_unknown_session_stay_not_found(api, bidder, auth_header):
    url = f"/api/sessions/{uuid.uuid4()}/bids"
    for price in ("20.00", "21.00"):
        assert_error(await api.post(url, json={"price": price}, headers=auth_header(bidder)), 404, "not_found")


@pytest.mark.parametrize("session_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_bid_on_a_malformed_session_id_is_not_found(api, bidder, auth_header, session_id):
    response = await api.post(f"/api/sessions/{session_id}/bids", json={"price": "20.00"},
                              headers=auth_header(bidder))
    assert_error(response, 404, "not_found")


@pytest.fixture
def scheduled_session(make_session):
    return make_session(starts_in=3600)


@pytest.fixture
def ended_session(make_session):
    return make_session(starts_in=-120, lasts=60)


async def test_bid_before_the_start_is_rejected_as_not_started(api, scheduled_session, bidder, auth_header):
    session = scheduled_session
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(bidder))
    assert_error(response, 409, "session_not_started")


async def test_bid_after_the_end_is_rejected_as_ended(api, ended_session, bidder, auth_header):
    session = ended_session
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(bidder))
    assert_error(response, 409, "session_ended")


async def test_bid_below_the_upset_price_is_rejected(api, session, bidder, auth_header):
    response = await api.post(bids_url(session), json={"price": "9.99"}, headers=auth_header(bidder))
    assert_error(response, 422, "below_upset_price")


@pytest.mark.parametrize("second_price", ["20.00", "19.99", 20])
async def test_rebid_not_higher_than_own_previous_is_rejected(api, session, bidder, auth_header, second_price):
    headers = auth_header(bidder)
    assert (await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)).status_code == 201
    response = await api.post(bids_url(session), json={"price": second_price}, headers=headers)
    assert_error(response, 409, "not_higher")


async def test_eleventh_rapid_bid_by_one_bidder_is_rate_limited_with_retry_after(api, session, bidder,
                                                                                   auth_header):
    headers = auth_header(bidder)
    accepted = [await api.post(bids_url(session), json={"price": f"{20 + i}.00"}, headers=headers) for i in range(10)]
    assert [response.status_code for response in accepted] == [201] * 10
    response = await api.post(bids_url(session), json={"price": "99.00"}, headers=headers)
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


# --- Register and login ----------------------------------------------------------------------

GOOD_REGISTRATION = {"username": "carol", "email": "carol@example.test", "password": "a-long-pass-9876"}


@pytest.mark.parametrize("payload", [
    {},
    {"username": "carol"},
    {**GOOD_REGISTRATION, "username": ""},
    {**GOOD_REGISTRATION, "username": "   "},
    {**GOOD_REGISTRATION, "username": "has space"},
    {**GOOD_REGISTRATION, "username": "x" * 151},
    {**GOOD_REGISTRATION, "username": 123},
    {**GOOD_REGISTRATION, "username": None},
    {**GOOD_REGISTRATION, "email": "not-an-email"},
    {**GOOD_REGISTRATION, "email": ""},
    {**GOOD_REGISTRATION, "email": "a@" + "b" * 300 + ".test"},
    {**GOOD_REGISTRATION, "password": "short"},
    {**GOOD_REGISTRATION, "password": "12345678901"},
    {**GOOD_REGISTRATION, "password": ""},
    {**GOOD_REGISTRATION, "password": "p" * 129},
    [],
    "carol",
], ids=repr)
async def test_register_with_bad_input_is_invalid(api, payload):
    response = await api.post("/api/auth/register", json=payload)
    assert_error(response, 422, "invalid")


@pytest.mark.parametrize("content", [b"", b"not json", b"{", b"\xff"], ids=repr)
async def test_register_with_a_body_that_is_not_json_is_invalid(api, content):
    response = await api.post("/api/auth/register", content=content, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid")


async def test_register_with_a_taken_username_in_any_case_is_username_taken(api, make_user):
    await sync_to_async(make_user)(username="carol", email="other@example.test")
    response = await api.post("/api/auth/register", json={**GOOD_REGISTRATION, "username": "CAROL"})
    assert_error(response, 409, "username_taken")


async def test_register_with_a_taken_email_in_any_case_is_email_taken(api, make_user):
    await sync_to_async(make_user)(username="someone", email="carol@example.test")
    response = await api.post("/api/auth/register", json={**GOOD_REGISTRATION, "email": "Carol@Example.TEST"})
    assert_error(response, 409, "email_taken")


async def test_register_with_good_input_is_created(api):
    response = await api.post("/api/auth/register", json=GOOD_REGISTRATION)
    assert response.status_code == 201, response.text
    assert response.json()["user"]["username"] == "carol"


async def test_login_answers_unknown_user_and_wrong_password_identically(api, make_user):
    await sync_to_async(make_user)(username="dave", password="right-pass-123")
    unknown = await api.post("/api/auth/login", json={"username": "nobody", "password": "right-pass-123"})
    wrong = await api.post("/api/auth/login", json={"username": "dave", "password": "wrong-pass-123"})
    assert_error(unknown, 401, "bad_credentials")
    assert_error(wrong, 401, "bad_credentials")
    assert unknown.json() == wrong.json()
    assert unknown.headers.get("WWW-Authenticate") == wrong.headers.get("WWW-Authenticate")


async def test_login_of_a_deactivated_user_is_bad_credentials(api, make_user):
    await sync_to_async(make_user)(username="erin", password="right-pass-123", is_active=False)
    response = await api.post("/api/auth/login", json={"username": "erin", "password": "right-pass-123"})
    assert_error(response, 401, "bad_credentials")


@pytest.mark.parametrize("payload", [{}, {"username": "dave"}, {"username": None, "password": "x"},
                                     {"username": "u" * 151, "password": "x"}, []], ids=repr)
async def test_login_with_bad_input_is_invalid(api, payload):
    response = await api.post("/api/auth/login", json=payload)
    assert_error(response, 422, "invalid")


@pytest.mark.parametrize("url,payload", [
    ("/api/auth/login", {"username": "da\x00ve", "password": "right-pass-123"}),
    ("/api/auth/register", {**GOOD_REGISTRATION, "username": "car\x00ol"}),
    ("/api/auth/register", {**GOOD_REGISTRATION, "email": "carol\x00@example.test"}),
], ids=["login username", "register username", "register email"])
async def test_auth_field_with_a_nul_character_is_invalid(api, url, payload):
    assert_error(await api.post(url, json=payload), 422, "invalid")


async def test_eleventh_login_attempt_in_a_minute_is_rate_limited_with_retry_after(api, make_user):
    await sync_to_async(make_user)(username="frank", password="right-pass-123")
    for _ in range(10):
        response = await api.post("/api/auth/login", json={"username": "frank", "password": "wrong-pass-123"})
        assert_error(response, 401, "bad_credentials")
    response = await api.post("/api/auth/login", json={"username": "frank", "password": "right-pass-123"})
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_me_without_a_token_is_not_authenticated(api):
    assert_error(await api.get("/api/auth/me"), 401, "not_authenticated")


# --- Listing and leaderboard queries ---------------------------------------------------------

@pytest.mark.parametrize("query", ["status=bogus", "status=", "limit=0", "limit=501", "limit=abc"])
async def test_sessions_list_with_a_bad_query_is_invalid(api, query):
    assert_error(await api.get(f"/api/sessions?{query}"), 422, "invalid")


@pytest.mark.parametrize("query", ["page_size=201", "page_size=0", "page=0", "page=-1", "page=abc",
                                   "page=99999999999999999999"])
async def test_leaderboard_with_a_bad_page_is_invalid(api, session, query):
    assert_error(await api.get(f"/api/sessions/{session.pk}/leaderboard?{query}"), 422, "invalid")


@pytest.mark.parametrize("path", ["/api/sessions/not-a-uuid", "/api/sessions/not-a-uuid/leaderboard",
                                  "/api/sessions/not-a-uuid/leaderboard/meta", "/api/sessions/not-a-uuid/results",
                                  "/api/no-such-endpoint"])
async def test_get_of_a_malformed_session_id_or_unknown_path_is_not_found(api, path):
    assert_error(await api.get(path), 404, "not_found")


@pytest.mark.parametrize("suffix", ["", "/leaderboard", "/leaderboard/meta", "/results"])
async def test_get_of_an_unknown_session_is_not_found(api, suffix):
    assert_error(await api.get(f"/api/sessions/{uuid.uuid4()}{suffix}"), 404, "not_found")


async def test_my_bid_without_a_bid_is_no_bid(api, session, bidder, auth_header):
    response = await api.get(f"/api/sessions/{session.pk}/bids/me", headers=auth_header(bidder))
    assert_error(response, 404, "no_bid")


async def test_wrong_method_on_the_bid_endpoint_is_method_not_allowed_with_the_contract_body(api, session):
    response = await api.delete(bids_url(session))
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_unsafe_method_on_an_unknown_api_path_is_not_found_not_a_csrf_page(api, method):
    assert_error(await api.request(method, "/api/no-such-endpoint", json={}), 404, "not_found")
