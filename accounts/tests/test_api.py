"""The auth API (accounts.api: register, login, me, password, logout): bad input is a 4xx with exactly
{"detail", "code"}, never a 500; good input is served; the abuse limits and revocation hold."""

import pytest
from asgiref.sync import sync_to_async

from accounts.tokens import token_issue
from accounts.user_cache import local_clear
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


async def test_login_after_too_many_failures_on_a_name_from_one_address_is_rate_limited(api, make_user, settings):
    settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = "3 per 15 minutes"
    await sync_to_async(make_user)(username="frank", password="right-pass-123")
    for _ in range(3):
        response = await api.post("/api/auth/login", json={"username": "frank", "password": "wrong-pass-123"})
        assert_error(response, 401, "bad_credentials")
    response = await api.post("/api/auth/login", json={"username": "FRANK", "password": "right-pass-123"})
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60


async def test_failures_from_other_addresses_never_refuse_a_correct_password(api_from, make_user, settings):
    """The per-name window counted every address: anyone could lock a bidder out by name."""
    settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = "3 per 15 minutes"
    await sync_to_async(make_user)(username="frank", password="right-pass-123")
    for n in range(12):
        attacker = api_from(f"198.51.100.{n % 4 + 1}")
        response = await attacker.post("/api/auth/login", json={"username": "frank", "password": f"guess-{n}"})
        assert response.status_code in (401, 429)
    response = await api_from("203.0.113.9").post("/api/auth/login",
                                                  json={"username": "frank", "password": "right-pass-123"})
    assert response.status_code == 200, response.text


async def test_correct_logins_are_not_counted(api, make_user):
    await sync_to_async(make_user)(username="frank", password="right-pass-123")
    for _ in range(12):
        response = await api.post("/api/auth/login", json={"username": "frank", "password": "right-pass-123"})
        assert response.status_code == 200, response.text


async def test_failures_on_many_names_from_one_address_are_limited_per_address(api_from, make_user, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = "4 per 15 minutes"
    await sync_to_async(make_user)(username="frank", password="right-pass-123")
    sprayer = api_from("198.51.100.20")
    for n in range(4):
        response = await sprayer.post("/api/auth/login", json={"username": f"name{n}", "password": "guess-123"})
        assert_error(response, 401, "bad_credentials")
    response = await sprayer.post("/api/auth/login", json={"username": "frank", "password": "right-pass-123"})
    assert_error(response, 429, "rate_limited")
    response = await api_from("198.51.100.21").post("/api/auth/login",
                                                    json={"username": "frank", "password": "right-pass-123"})
    assert response.status_code == 200, response.text


async def test_the_client_address_is_the_connection_not_x_forwarded_for(api, make_user, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = "3 per 15 minutes"
    for n in range(3):
        await api.post("/api/auth/login", json={"username": f"name{n}", "password": "guess-123"},
                       headers={"X-Forwarded-For": f"192.0.2.{n}"})
    response = await api.post("/api/auth/login", json={"username": "other", "password": "guess-123"},
                              headers={"X-Forwarded-For": "192.0.2.200"})
    assert_error(response, 429, "rate_limited")


async def test_registration_is_limited_per_client_address(api_from, settings):
    settings.REGISTRATIONS_PER_ADDRESS = "2 per hour"
    client = api_from("198.51.100.30")
    for n in range(2):
        body = {"username": f"sybil{n}", "email": f"sybil{n}@example.test", "password": "a-long-pass-9876"}
        assert (await client.post("/api/auth/register", json=body)).status_code == 201
    body = {"username": "sybil9", "email": "sybil9@example.test", "password": "a-long-pass-9876"}
    response = await client.post("/api/auth/register", json=body)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert (await api_from("198.51.100.31").post("/api/auth/register", json=body)).status_code == 201


async def test_registration_attempts_with_a_taken_email_count_too(api, make_user, settings):
    """Asking "is this e-mail registered?" is what the limit stops from being asked in bulk."""
    settings.REGISTRATIONS_PER_ADDRESS = "2 per hour"
    await sync_to_async(make_user)(username="someone", email="known@example.test")
    for n in range(2):
        body = {"username": f"probe{n}", "email": "known@example.test", "password": "a-long-pass-9876"}
        assert_error(await api.post("/api/auth/register", json=body), 409, "email_taken")
    body = {"username": "probe9", "email": "known@example.test", "password": "a-long-pass-9876"}
    assert_error(await api.post("/api/auth/register", json=body), 429, "rate_limited")


@pytest.mark.parametrize("look_alike", ["ａｄｍｉｎ", "аdmin", "ADMIN", "admіn"],
                         ids=["full-width", "cyrillic a", "upper case", "cyrillic i"])
async def test_register_with_a_look_alike_of_a_taken_username_is_username_taken(api, make_user, look_alike):
    await sync_to_async(make_user)(username="admin", email="admin@example.test")
    response = await api.post("/api/auth/register", json={**GOOD_REGISTRATION, "username": look_alike})
    assert_error(response, 409, "username_taken")


async def test_a_full_width_username_is_stored_nfkc_normalized(api):
    response = await api.post("/api/auth/register", json={**GOOD_REGISTRATION, "username": "ｃａｒｏｌ"})
    assert response.status_code == 201, response.text
    assert response.json()["user"]["username"] == "carol"


@pytest.mark.parametrize("typed", ["carol", "CAROL", "ＣａｒｏＬ"])
async def test_login_compares_usernames_nfkc_normalized_and_case_insensitively(api, make_user, typed):
    await sync_to_async(make_user)(username="Carol", password="right-pass-123")
    response = await api.post("/api/auth/login", json={"username": typed, "password": "right-pass-123"})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "Carol"


async def test_login_does_not_take_a_look_alike_for_the_name(api, make_user):
    await sync_to_async(make_user)(username="carol", password="right-pass-123")
    response = await api.post("/api/auth/login", json={"username": "саrol", "password": "right-pass-123"})
    assert_error(response, 401, "bad_credentials")


async def test_password_change_answers_a_new_token_and_revokes_the_old_ones(api, make_user, token_for):
    user = await sync_to_async(make_user)(username="grace", password="old-pass-12345")
    old = {"Authorization": f"Bearer {token_for(user)}"}
    response = await api.post("/api/auth/password", headers=old,
                              json={"old_password": "old-pass-12345", "new_password": "new-pass-67890"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user", "access_token", "token_type", "expires_in"} and body["user"]["username"] == "grace"
    local_clear()  # every process's local auth cache has expired
    assert_error(await api.get("/api/auth/me", headers=old), 401, "not_authenticated")
    new = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await api.get("/api/auth/me", headers=new)).status_code == 200
    login = await api.post("/api/auth/login", json={"username": "grace", "password": "new-pass-67890"})
    assert login.status_code == 200, login.text


async def test_password_change_with_a_wrong_old_password_is_invalid_and_counts_as_a_failed_login(
        api, make_user, auth_header, settings):
    settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = "2 per 15 minutes"
    user = await sync_to_async(make_user)(username="grace", password="old-pass-12345")
    headers = auth_header(user)
    for _ in range(2):
        response = await api.post("/api/auth/password", headers=headers,
                                  json={"old_password": "guess-123456", "new_password": "new-pass-67890"})
        assert_error(response, 422, "invalid")
    response = await api.post("/api/auth/password", headers=headers,
                              json={"old_password": "old-pass-12345", "new_password": "new-pass-67890"})
    assert_error(response, 429, "rate_limited")


@pytest.mark.parametrize("new_password", ["short", "12345678901", "password"])
async def test_password_change_to_a_password_the_validators_refuse_is_invalid(api, make_user, auth_header,
                                                                               new_password):
    user = await sync_to_async(make_user)(password="old-pass-12345")
    response = await api.post("/api/auth/password", headers=auth_header(user),
                              json={"old_password": "old-pass-12345", "new_password": new_password})
    assert_error(response, 422, "invalid")
    assert response.json()["detail"].startswith("new_password:")


@pytest.mark.parametrize("path", ["/api/auth/password", "/api/auth/logout"])
async def test_password_change_and_logout_without_a_token_are_not_authenticated(api, path):
    response = await api.post(path, json={"old_password": "a", "new_password": "b"})
    assert_error(response, 401, "not_authenticated")


async def test_logout_revokes_every_token_of_the_user_and_only_theirs(api, make_user, token_for):
    user, other = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    first, second = ({"Authorization": f"Bearer {token_for(user)}"},
                     {"Authorization": f"Bearer {token_issue(user_id=str(user.pk), token_version=0)[0]}"})
    others = {"Authorization": f"Bearer {token_for(other)}"}
    for headers in (first, second, others):
        assert (await api.get("/api/auth/me", headers=headers)).status_code == 200
    response = await api.post("/api/auth/logout", headers=first)
    assert response.status_code == 204 and response.content == b""
    local_clear()
    assert_error(await api.get("/api/auth/me", headers=first), 401, "not_authenticated")
    assert_error(await api.get("/api/auth/me", headers=second), 401, "not_authenticated")
    assert (await api.get("/api/auth/me", headers=others)).status_code == 200
    login = await api.post("/api/auth/login", json={"username": user.username, "password": "s3cret-pass-123"})
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await api.get("/api/auth/me", headers=fresh)).status_code == 200


async def test_me_without_a_token_is_not_authenticated(api):
    assert_error(await api.get("/api/auth/me"), 401, "not_authenticated")
