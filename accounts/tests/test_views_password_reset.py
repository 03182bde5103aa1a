""""Forgot your password?" (accounts.views.PasswordResetPage and Django's reset views): the mail
with its one-time link (Django's locmem backend in tests), the new password, and what it revokes."""

import re

import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.test import Client

from accounts.models import User
from accounts.selectors import user_from_token
from accounts.user_cache import local_clear

pytestmark = pytest.mark.django_db

OLD, NEW = "s3cret-pass-123", "brand-new-pass-4567"


def reset_link(message) -> str:
    [link] = re.findall(r"https?://[^/\s]+(/password/reset/\S+/)", message.body)
    return link


def ask_for_a_link(client: Client, email: str):
    return client.post("/password/reset/", {"email": email})


def set_password(client: Client, link: str, password: str):
    """Open the mailed link (Django moves the token into the session and redirects), then send the form."""
    opened = client.get(link, follow=True)
    assert opened.status_code == 200
    if not opened.context["validlink"]:
        return opened
    form_url = opened.redirect_chain[-1][0]
    return client.post(form_url, {"new_password1": password, "new_password2": password})


def test_the_login_page_links_to_the_reset(client):
    page = client.get("/login/").content.decode()
    assert 'href="/password/reset/"' in page and "Forgot your password?" in page


def test_the_reset_pages_render_in_the_sites_style(client):
    for path in ("/password/reset/", "/password/reset/sent/", "/password/reset/done/"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "flashbid/site.css" in page.content.decode(), path


@pytest.mark.django_db(transaction=True)  # the revocation reaches Redis after the commit, as in production
def test_the_mailed_link_sets_a_new_password_and_signs_out_everywhere(client, make_user, token_for):
    user = make_user(password=OLD, email="alice@example.test")
    token = token_for(user)
    assert async_to_sync(user_from_token)(token) is not None  # the token works (the user hash is in Redis)
    elsewhere = Client()
    elsewhere.force_login(user)

    response = ask_for_a_link(client, "Alice@Example.test")
    assert response.status_code == 302 and response["Location"] == "/password/reset/sent/"
    [message] = mail.outbox
    assert message.to == ["alice@example.test"] and message.subject == "Set a new FlashBid password"
    assert user.username in message.body

    response = set_password(client, reset_link(message), NEW)
    assert response.status_code == 302 and response["Location"] == "/password/reset/done/"
    stored = User.objects.get(pk=user.pk)
    assert stored.check_password(NEW) and not stored.check_password(OLD)
    # The new password revokes every token and login session (the token version moved on).
    assert stored.token_version == user.token_version + 1
    local_clear()
    assert async_to_sync(user_from_token)(token) is None
    assert not elsewhere.get("/logout/").context["user"].is_authenticated
    # ... and the new password logs in.
    assert Client().post("/login/", {"username": user.username, "password": NEW}).status_code == 302


def test_a_link_works_once(client, make_user):
    make_user(password=OLD, email="bob@example.test")
    ask_for_a_link(client, "bob@example.test")
    link = reset_link(mail.outbox[0])
    assert set_password(client, link, NEW).status_code == 302
    again = set_password(Client(), link, "another-pass-8910")
    assert again.status_code == 200 and "does not work any more" in again.content.decode()


def test_a_link_stops_working_when_the_password_changes_meanwhile(client, make_user):
    user = make_user(password=OLD, email="carol@example.test")
    ask_for_a_link(client, "carol@example.test")
    user.set_password("changed-elsewhere-1")
    user.save()
    page = set_password(client, reset_link(mail.outbox[0]), NEW)
    assert "does not work any more" in page.content.decode()
    assert User.objects.get(pk=user.pk).check_password("changed-elsewhere-1")


@pytest.mark.parametrize("who", ["unknown", "inactive"])
def test_no_mail_for_an_unknown_or_inactive_address_and_the_same_answer(client, make_user, who):
    make_user(email="dave@example.test", is_active=who != "inactive")
    response = ask_for_a_link(client, "nobody@example.test" if who == "unknown" else "dave@example.test")
    assert response.status_code == 302 and response["Location"] == "/password/reset/sent/"
    assert mail.outbox == []


def test_reset_requests_are_limited_per_client_address(client, make_user, settings):
    settings.PASSWORD_RESETS_PER_ADDRESS = "1 per hour"
    make_user(email="erin@example.test")
    assert ask_for_a_link(client, "erin@example.test").status_code == 302
    response = ask_for_a_link(client, "erin@example.test")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "Too many password-reset requests" in response.content.decode()
    assert len(mail.outbox) == 1
