"""The auth API (accounts.api: register, login, me): bad input is a 4xx with exactly {"detail", "code"},
never a 500; good input is served."""

import pytest
from asgiref.sync import sync_to_async

from tests.assertions import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

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
