"""The login, registration, password-change and logout pages: forms over accounts.services, CSRF,
redirects to next, the abuse limits."""

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY
from django.test import Client

from accounts.models import User
from accounts.selectors import user_from_token
from accounts.user_cache import local_clear

pytestmark = pytest.mark.django_db

PASSWORD = "s3cret-pass-123"


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def csrf_token_of(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.cookies["csrftoken"].value


def test_every_account_page_renders_for_anonymous_and_logged_in_users(client, make_user):
    for path in ("/login/", "/register/", "/logout/"):
        assert client.get(path).status_code == 200, path
    assert client.get("/password/")["Location"] == "/login/?next=/password/"
    client.force_login(make_user())
    for path in ("/login/", "/register/", "/password/", "/logout/"):
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("path", ["/login/", "/register/", "/password/", "/logout/"])
def test_a_form_posted_without_the_csrf_token_is_forbidden(path, make_user):
    user = make_user(password=PASSWORD)
    client = csrf_client()
    client.force_login(user)
    response = client.post(path, {"username": user.username, "password": PASSWORD})
    assert response.status_code == 403


def test_login_with_the_csrf_token_logs_in_and_redirects_to_next(make_user):
    user = make_user(password=PASSWORD)
    client = csrf_client()
    token = csrf_token_of(client, "/login/?next=/sessions/")
    response = client.post("/login/", {"username": user.username, "password": PASSWORD, "next": "/sessions/",
                                       "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/sessions/"
    assert client.session[SESSION_KEY] == str(user.pk)


def test_the_login_form_carries_next_from_the_query_string(client):
    page = client.get("/login/?next=/sessions/abc/").content.decode()
    assert 'name="next" value="/sessions/abc/"' in page


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", "javascript:alert(1)"])
def test_login_never_redirects_off_site(client, make_user, next_url):
    user = make_user(password=PASSWORD)
    response = client.post("/login/", {"username": user.username, "password": PASSWORD, "next": next_url})
    assert response.status_code == 302 and response["Location"] == "/"


def test_wrong_password_shows_the_error_and_does_not_log_in(client, make_user):
    user = make_user(password=PASSWORD)
    response = client.post("/login/", {"username": user.username, "password": "wrong-password"})
    assert response.status_code == 200
    assert "Wrong username or password." in response.content.decode()
    assert SESSION_KEY not in client.session


def test_login_page_shares_the_login_limits(client, make_user, settings):
    settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = "2 per 15 minutes"
    user = make_user(password=PASSWORD)
    for _ in range(2):
        assert client.post("/login/", {"username": user.username, "password": "nope"}).status_code == 200
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 900
    assert "Too many failed login attempts" in response.content.decode()
    assert SESSION_KEY not in client.session
    # Another address is not refused for this one's failures.
    other = Client(REMOTE_ADDR="203.0.113.40")
    assert other.post("/login/", {"username": user.username, "password": PASSWORD}).status_code == 302


def test_register_page_is_limited_per_client_address(client, settings):
    settings.REGISTRATIONS_PER_ADDRESS = "1 per hour"
    data = {"email": "a@example.test", "username": "first", "password": PASSWORD, "password_again": PASSWORD}
    assert client.post("/register/", data).status_code == 302
    client.logout()
    response = client.post("/register/", {**data, "username": "second", "email": "b@example.test"})
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert not User.objects.filter(username="second").exists()


def test_register_page_refuses_a_look_alike_of_a_taken_name(client, make_user):
    make_user(username="admin")
    data = {"username": "аdmin", "email": "fake@example.test", "password": PASSWORD, "password_again": PASSWORD}
    response = client.post("/register/", data)
    assert response.status_code == 200
    assert "looks like one that is" in " ".join(response.context["form"].errors["username"])
    assert User.objects.count() == 1


def test_register_creates_the_user_logs_in_and_redirects_to_next():
    client = csrf_client()
    token = csrf_token_of(client, "/register/")
    response = client.post("/register/", {"username": "newbidder", "email": "New@Example.test",
                                          "password": PASSWORD, "password_again": PASSWORD,
                                          "next": "/sessions/x/", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/sessions/x/"
    user = User.objects.get(username="newbidder")
    assert user.email == "new@example.test" and user.check_password(PASSWORD)
    assert client.session[SESSION_KEY] == str(user.pk)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"username": "taken"}, "username", "That username is taken"),
    ({"email": "taken@example.test"}, "email", "That email is already registered."),
    ({"password": "short", "password_again": "short"}, "password", "too short"),
    ({"password_again": "something-else-123"}, "password_again", "The two passwords differ."),
    ({"username": "bad name!"}, "username", "Enter a valid username"),
])
def test_register_shows_the_service_errors_on_their_fields(client, make_user, fields, field, message):
    make_user(username="taken", email="taken@example.test")
    data = {"username": "fresh", "email": "fresh@example.test", "password": PASSWORD, "password_again": PASSWORD}
    data.update(fields)
    response = client.post("/register/", data)
    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert not User.objects.filter(username="fresh").exists()


def test_logout_needs_a_post_and_then_logs_out(client, make_user):
    client.force_login(make_user())
    assert client.get("/logout/").status_code == 200
    assert SESSION_KEY in client.session
    response = client.post("/logout/", {"next": "/sessions/"})
    assert response.status_code == 302 and response["Location"] == "/sessions/"
    assert SESSION_KEY not in client.session


@pytest.mark.django_db(transaction=True)
def test_password_change_page_keeps_this_session_and_ends_every_other_session_and_token(make_user, token_for):
    user = make_user(password=PASSWORD)
    token = token_for(user)
    elsewhere = Client()
    elsewhere.force_login(user)
    client = csrf_client()
    client.force_login(user)
    csrf = csrf_token_of(client, "/password/")
    response = client.post("/password/", {"old_password": PASSWORD, "new_password": "new-pass-67890",
                                          "new_password_again": "new-pass-67890", "csrfmiddlewaretoken": csrf})
    assert response.status_code == 200 and "Password changed" in response.content.decode()
    assert client.get("/logout/").context["user"].is_authenticated  # still signed in here
    assert not elsewhere.get("/logout/").context["user"].is_authenticated  # signed out elsewhere
    local_clear()
    assert async_to_sync(user_from_token)(token) is None
    assert User.objects.get(pk=user.pk).check_password("new-pass-67890")


def test_password_change_page_shows_a_wrong_current_password_and_counts_it(client, make_user, settings):
    settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = "1 per 15 minutes"
    user = make_user(password=PASSWORD)
    client.force_login(user)
    data = {"old_password": "wrong-pass-000", "new_password": "new-pass-67890", "new_password_again": "new-pass-67890"}
    response = client.post("/password/", data)
    assert response.status_code == 200
    assert response.context["form"].errors["old_password"]
    response = client.post("/password/", {**data, "old_password": PASSWORD})
    assert response.status_code == 429
    assert User.objects.get(pk=user.pk).check_password(PASSWORD)
