"""The user admin (accounts.admin): its login under the shared login limits (a 429 page), "log out
everywhere", and the admin's password change and deactivation revoking tokens."""

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from accounts.models import User
from accounts.user_cache import user_hash_key
from core.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "s3cret-pass-123"


@pytest.fixture
def staff(make_user):
    return make_user(username="boss", password=PASSWORD, is_staff=True, is_superuser=True)


def versions(user) -> tuple[int, int]:
    """(PostgreSQL's token version, the Redis user hash's)."""
    return (User.objects.values_list("token_version", flat=True).get(pk=user.pk),
            int(get_redis().hget(user_hash_key(user.pk), "ver")))


def test_admin_login_after_too_many_failures_is_a_429_page_with_retry_after(client, staff, settings):
    settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = "3 per 15 minutes"
    for _ in range(3):
        response = client.post("/admin/login/", {"username": "boss", "password": "guess-123"})
        assert response.status_code == 200
    response = client.post("/admin/login/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 900
    page = response.content.decode()
    assert "Too many failed login attempts" in page and 'id="login-form"' in page
    assert SESSION_KEY not in client.session
    # The admin's password is not refused to someone else because of these failures.
    response = Client(REMOTE_ADDR="203.0.113.50").post("/admin/login/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 302


async def test_failures_at_the_api_count_at_the_admin_login(api, staff, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = "2 per 15 minutes"
    for n in range(2):
        response = await api.post("/api/auth/login", json={"username": f"name{n}", "password": "guess-123"})
        assert response.status_code == 401
    assert (await api.get("/admin/login/")).status_code == 200  # the CSRF cookie
    response = await api.post("/admin/login/", data={"username": "boss", "password": PASSWORD,
                                                     "csrfmiddlewaretoken": api.cookies["csrftoken"]})
    assert response.status_code == 429


def test_log_out_everywhere_revokes_the_selected_users_tokens_and_sessions(client, staff, make_user):
    bidder, bystander = make_user(), make_user()
    elsewhere = Client()
    elsewhere.force_login(bidder)
    client.force_login(staff)
    response = client.post("/admin/accounts/user/",
                           {"action": "log_out_everywhere", "_selected_action": [bidder.pk]}, follow=True)
    assert response.status_code == 200 and "Logged out everywhere: 1 user" in response.content.decode()
    assert versions(bidder) == (1, 1)
    assert versions(bystander)[0] == 0
    assert not elsewhere.get("/logout/").context["user"].is_authenticated


def test_password_set_in_the_admin_revokes_tokens(client, staff, make_user):
    bidder = make_user()
    client.force_login(staff)
    response = client.post(f"/admin/accounts/user/{bidder.pk}/password/", {
        "password1": "set-by-admin-123", "password2": "set-by-admin-123", "usable_password": "true"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert versions(bidder) == (1, 1)


def test_admins_own_password_change_revokes_their_tokens_and_keeps_their_session(client, staff):
    client.force_login(staff)
    response = client.post("/admin/password_change/", {"old_password": PASSWORD, "new_password1": "new-pass-67890",
                                                       "new_password2": "new-pass-67890"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert versions(staff) == (1, 1)
    assert client.get("/admin/").status_code == 200


def test_deactivating_a_user_in_the_admin_revokes_tokens(client, staff, make_user):
    bidder = make_user()
    client.force_login(staff)
    # The change form as the admin sends it with "Active" unticked (an unticked box is not sent).
    data = {"username": bidder.username, "email": bidder.email, "weight": bidder.weight,
            "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    response = client.post(f"/admin/accounts/user/{bidder.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert User.objects.get(pk=bidder.pk).is_active is False
    assert versions(bidder) == (1, 1)


def test_adding_a_look_alike_of_a_taken_name_in_the_admin_is_a_form_error(client, staff, make_user):
    make_user(username="carol")
    client.force_login(staff)
    response = client.post("/admin/accounts/user/add/", {
        "username": "саrol", "email": "c2@example.test", "weight": 1, "password1": "a-long-pass-9876",
        "password2": "a-long-pass-9876", "usable_password": "true"})
    assert response.status_code == 200
    assert "looks like one that is" in str(response.context["adminform"].form.errors)


def test_log_out_everywhere_is_a_bulk_action(client, staff, make_user):
    first, second, bystander = make_user(), make_user(), make_user()
    client.force_login(staff)
    response = client.post("/admin/accounts/user/", {"action": "log_out_everywhere",
                                                     "_selected_action": [first.pk, second.pk]}, follow=True)
    assert "Logged out everywhere: 2 user(s)" in response.content.decode()
    assert versions(first)[0] == versions(second)[0] == 1 and versions(bystander)[0] == 0


@pytest.mark.parametrize("weight", ["-1", "1000001"])
def test_a_weight_out_of_range_in_the_change_form_is_refused_in_words(client, staff, make_user, weight):
    bidder = make_user()
    client.force_login(staff)
    data = {"username": bidder.username, "email": bidder.email, "weight": weight, "is_active": "on",
            "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    response = client.post(f"/admin/accounts/user/{bidder.pk}/change/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["weight"] == ["Must be a number from 0 to 1,000,000."]
    assert "onstraint" not in response.content.decode()
    assert User.objects.get(pk=bidder.pk).weight == 1.0


def test_a_weight_out_of_range_in_the_list_is_refused_in_words(client, staff, make_user):
    bidder = make_user()
    client.force_login(staff)
    data = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(bidder.pk),
            "form-0-weight": "-3", "_save": "Save"}
    response = client.post("/admin/accounts/user/?q=" + bidder.username, data)
    assert response.status_code == 200
    assert "Must be a number from 0 to 1,000,000." in response.content.decode()
    assert User.objects.get(pk=bidder.pk).weight == 1.0
