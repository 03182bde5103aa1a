"""Issue 13's account findings against the running stack: daphne, real Redis and PostgreSQL, clients
on different loopback addresses (127.0.0.x) so the per-address limits see different clients."""

import re
import time

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]

PASSWORD = "s3cret-pass-123"
LIMITS = {"LOGIN_FAILURES_PER_NAME_AND_ADDRESS": "3 per 15 minutes", "LOGIN_FAILURES_PER_ADDRESS": "6 per 15 minutes",
          "REGISTRATIONS_PER_ADDRESS": "2 per hour"}


class CheapPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Hashes the servers can check (theirs is PBKDF2 too; the iterations are in the hash) and the
    test can make quickly; a server upgrades one at its first correct login."""

    iterations = 1_000


@pytest.fixture(autouse=True)
def _hashes_the_servers_know(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CheapPBKDF2PasswordHasher"]


@pytest.fixture
def web(started):
    """Two web processes on one Redis and one database: (base URL of A, base URL of B)."""
    a, b = processes.free_port(), processes.free_port()
    web_a = started(processes.daphne, a, name="daphne-a", wait=False, **LIMITS)
    web_b = started(processes.daphne, b, name="daphne-b", wait=False, **LIMITS)
    processes.wait_for_port(a, web_a)
    processes.wait_for_port(b, web_b)
    return f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"


def client_from(address: str, base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def admin_login(client: httpx.Client, password: str) -> httpx.Response:
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return client.post("/admin/login/", data={"username": "boss", "password": password,
                                              "csrfmiddlewaretoken": token, "next": "/admin/"})


def test_the_admin_login_is_limited_and_a_correct_password_elsewhere_is_not(web, make_user):
    make_user(username="boss", password=PASSWORD, is_staff=True, is_superuser=True)
    attacker = client_from("127.0.0.2", web[0])
    for n in range(3):
        assert admin_login(attacker, f"guess-{n}").status_code == 200
    refused = admin_login(attacker, PASSWORD)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 900
    assert "Too many failed login attempts" in refused.text
    # The same address on the other web process: the windows are in Redis.
    assert admin_login(client_from("127.0.0.2", web[1]), PASSWORD).status_code == 429
    assert admin_login(client_from("127.0.0.3", web[1]), PASSWORD).status_code == 302


def test_nobody_can_lock_a_bidder_out_by_failing_on_their_name(web, make_user):
    make_user(username="frank", password=PASSWORD)
    for n in range(12):
        attacker = client_from(f"127.0.0.{10 + n % 3}", web[n % 2])
        response = attacker.post("/api/auth/login", json={"username": "frank", "password": f"guess-{n}"})
        assert response.status_code in (401, 429)
    response = client_from("127.0.0.20", web[0]).post("/api/auth/login",
                                                      json={"username": "FRANK", "password": PASSWORD})
    assert response.status_code == 200, response.text


def test_registration_is_limited_per_address_and_look_alikes_are_taken(web, make_user):
    make_user(username="admin")
    client = client_from("127.0.0.30", web[0])
    look_alike = client.post("/api/auth/register", json={"username": "аdmin", "email": "a1@example.test",
                                                         "password": "a-long-pass-9876"})
    assert look_alike.status_code == 409 and look_alike.json()["code"] == "username_taken"
    created = client.post("/api/auth/register", json={"username": "sybil1", "email": "s1@example.test",
                                                      "password": "a-long-pass-9876"})
    assert created.status_code == 201, created.text
    refused = client.post("/api/auth/register", json={"username": "sybil2", "email": "s2@example.test",
                                                      "password": "a-long-pass-9876"})
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_logout_on_one_web_process_revokes_the_token_on_another_within_the_local_cache_ttl(web, make_user):
    make_user(username="grace", password=PASSWORD)
    a, b = client_from("127.0.0.40", web[0]), client_from("127.0.0.40", web[1])
    token = a.post("/api/auth/login", json={"username": "grace", "password": PASSWORD}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert b.get("/api/auth/me", headers=headers).status_code == 200  # B now holds the user in its local cache
    assert a.post("/api/auth/logout", headers=headers).status_code == 204
    started = time.monotonic()
    processes.wait_until(lambda: b.get("/api/auth/me", headers=headers).status_code == 401, timeout=5.0 + 1.0,
                         message="the token refused by the other web process")
    print(f"revoked on the other process after {time.monotonic() - started:.2f} s")
    assert a.get("/api/auth/me", headers=headers).status_code == 401


def test_a_password_change_answers_a_new_token_and_the_old_one_stops(web, make_user):
    make_user(username="heidi", password=PASSWORD)
    client = client_from("127.0.0.50", web[0])
    old = client.post("/api/auth/login", json={"username": "heidi", "password": PASSWORD}).json()["access_token"]
    changed = client.post("/api/auth/password", headers={"Authorization": f"Bearer {old}"},
                          json={"old_password": PASSWORD, "new_password": "new-pass-67890"})
    assert changed.status_code == 200, changed.text
    new = changed.json()["access_token"]
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200
