"""Settings (flashbid/settings.py, flashbid/runtime.py, flashbid/checks.py) are secure by default:
DEBUG off unless set, no secret in the source (a development key generated once per checkout into
its runtime folder, mode 0600), weak signing keys fail `check --deploy`, which passes in the
production configuration; the pages carry a strict Content-Security-Policy; Django's cache holds
JSON, never pickles.

Settings are read once per process, so most of these start a fresh Python with the environment
under test."""

import json
import os
import pickle
import secrets
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from tests import processes

# Variables that decide what is checked here: each test states its own.
_DECIDING = ("DEBUG", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "JWT_SIGNING_KEY", "FLASHBID_RUNTIME_DIR",
             "ALLOWED_HOSTS", "BEHIND_HTTPS_PROXY", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
             "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
             "EMAIL_URL", "DEFAULT_FROM_EMAIL", "SITE_URL")
PRODUCTION = {"DEBUG": "false", "ALLOWED_HOSTS": "bids.example.com"}


def _env(tmp_path, **given: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DECIDING}
    env.update(DJANGO_SETTINGS_MODULE="flashbid.settings", FLASHBID_RUNTIME_DIR=str(tmp_path / "var"))
    env.update(given)
    return env


def _settings_of(tmp_path, names: tuple[str, ...], **given: str) -> dict:
    """The named settings as a fresh process with this environment sees them."""
    code = ("import json; from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=processes.ROOT, env=_env(tmp_path, **given),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _check_deploy(tmp_path, **given: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=processes.ROOT, env=_env(tmp_path, **given), capture_output=True, text=True,
                          timeout=120)


def _strong_key() -> str:
    return secrets.token_urlsafe(50)


# --- DEBUG and the keys -------------------------------------------------------------------------

def test_debug_is_off_when_the_environment_does_not_set_it(tmp_path):
    assert _settings_of(tmp_path, ("DEBUG",), SECRET_KEY=_strong_key()) == {"DEBUG": False}


def test_with_debug_off_and_no_secret_key_the_process_refuses_to_start(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=processes.ROOT, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr
    assert not (tmp_path / "var").exists(), "nothing generated outside development"


def test_without_secret_key_development_generates_one_into_the_runtime_folder_for_its_owner_only(tmp_path):
    seen = _settings_of(tmp_path, ("SECRET_KEY",), DEBUG="true")
    key_file = tmp_path / "var" / "secret_key"
    assert seen["SECRET_KEY"] == key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(seen["SECRET_KEY"]) >= 50
    assert _settings_of(tmp_path, ("SECRET_KEY",), DEBUG="true") == seen, "kept, not generated again"


def test_every_process_of_a_checkout_agrees_on_the_generated_key_even_when_they_start_at_once(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: _settings_of(tmp_path, ("SECRET_KEY", "JWT_SIGNING_KEY"), DEBUG="true"),
                             range(8)))
    assert all(k == keys[0] for k in keys), keys
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["secret_key"], "no temporary file left behind"


def test_no_key_is_built_in_two_checkouts_never_share_one(tmp_path):
    names = ("SECRET_KEY", "JWT_SIGNING_KEY")
    one = _settings_of(tmp_path / "one", names, DEBUG="true")
    other = _settings_of(tmp_path / "other", names, DEBUG="true")
    assert one["SECRET_KEY"] != other["SECRET_KEY"]
    assert one["JWT_SIGNING_KEY"] != other["JWT_SIGNING_KEY"]


def test_a_runtime_key_others_can_read_is_refused(tmp_path):
    key_file = tmp_path / "var" / "secret_key"
    key_file.parent.mkdir()
    key_file.write_text(_strong_key())
    key_file.chmod(0o644)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=processes.ROOT,
                            env=_env(tmp_path, DEBUG="true"), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "chmod 600" in result.stderr


def test_the_jwt_key_is_derived_from_the_secret_key_never_the_secret_key_itself(tmp_path):
    key = _strong_key()
    derived = _settings_of(tmp_path, ("JWT_SIGNING_KEY",), SECRET_KEY=key, **PRODUCTION)["JWT_SIGNING_KEY"]
    assert derived != key and key not in derived and len(derived) >= 50
    explicit = _strong_key()
    assert _settings_of(tmp_path, ("JWT_SIGNING_KEY",), SECRET_KEY=key, JWT_SIGNING_KEY=explicit,
                        **PRODUCTION) == {"JWT_SIGNING_KEY": explicit}


# --- check --deploy -----------------------------------------------------------------------------

def test_the_production_configuration_passes_check_deploy_at_warning_level(tmp_path):
    result = _check_deploy(tmp_path, SECRET_KEY=_strong_key(), **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_production_configuration_is_secure_without_being_told(tmp_path):
    seen = _settings_of(tmp_path, ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
                                   "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "X_FRAME_OPTIONS"),
                        SECRET_KEY=_strong_key(), **PRODUCTION)
    assert seen == {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_SSL_REDIRECT": True,
                    "SECURE_HSTS_SECONDS": 31_536_000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
                    "X_FRAME_OPTIONS": "DENY"}


WEAK_KEYS = {
    "short": "k3y-" + "a1b2c3d4" * 4,
    "few different characters": "ab" * 40,
    "startproject placeholder": "django-insecure-" + secrets.token_urlsafe(50),
}


@pytest.mark.parametrize("weakness", WEAK_KEYS)
def test_a_weak_signing_key_fails_check_deploy(tmp_path, weakness):
    """Each key weak in the same way at once (one process start for both checks): each has its own
    error."""
    keys = {"SECRET_KEY": WEAK_KEYS[weakness], "JWT_SIGNING_KEY": WEAK_KEYS[weakness]}
    result = _check_deploy(tmp_path, **keys, **PRODUCTION)
    assert result.returncode != 0
    assert "flashbid.E001" in result.stderr and "flashbid.E002" in result.stderr, result.stderr
    for name, check_id in (("SECRET_KEY", "flashbid.E001"), ("JWT_SIGNING_KEY", "flashbid.E002")):
        # And only the weak one's: the other key strong, its check quiet.
        one = {"SECRET_KEY": _strong_key(), "JWT_SIGNING_KEY": _strong_key(), name: keys[name]}
        if weakness == "short":  # (once: each check's level does not depend on the weakness)
            # An error, not a warning: plain `check --deploy` fails too.
            plain = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=processes.ROOT,
                                   env=_env(tmp_path, **one, **PRODUCTION), capture_output=True, text=True,
                                   timeout=120)
            assert plain.returncode != 0 and check_id in plain.stderr
            assert ({"flashbid.E001", "flashbid.E002"} - {check_id}).pop() not in plain.stderr


# --- Redis: the engine's, and the plain ones of the broker, the channel layer, the cache ---------

_PLAIN_REDIS = ("CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "CACHE_URL")


def _without_plain_redis(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _PLAIN_REDIS}


def test_broker_channel_layer_and_cache_default_to_redis_url_when_it_is_no_cluster(tmp_path, monkeypatch):
    for name in _PLAIN_REDIS:
        monkeypatch.delenv(name, raising=False)
    seen = _settings_of(tmp_path, ("REDIS_CLUSTER", *_PLAIN_REDIS, "CACHES", "CHANNEL_LAYERS"), DEBUG="true",
                        REDIS_URL="redis://127.0.0.1:6379/9")
    assert seen["REDIS_CLUSTER"] is False
    assert {seen[name] for name in _PLAIN_REDIS} == {"redis://127.0.0.1:6379/9"}
    assert seen["CACHES"]["default"]["LOCATION"] == "redis://127.0.0.1:6379/9"
    assert seen["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]["address"] == "redis://127.0.0.1:6379/9"


def test_a_cluster_refuses_to_start_without_a_plain_redis_for_each_of_the_others(tmp_path, monkeypatch):
    for name in _PLAIN_REDIS:
        monkeypatch.delenv(name, raising=False)
    given = {"DEBUG": "true", "REDIS_CLUSTER": "true", "REDIS_URL": "redis://10.0.0.1:7000/0",
             "CELERY_BROKER_URL": "redis://plain:6379/0", "CHANNEL_LAYER_URL": "redis://plain:6379/1"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=processes.ROOT,
                            env=_without_plain_redis(_env(tmp_path)) | given, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert ("REDIS_CLUSTER is on, so REDIS_URL names a Redis Cluster node, which Django's cache (django-redis) "
            "cannot use: set CACHE_URL to a plain (non-cluster) Redis URL") in result.stderr

    seen = _settings_of(tmp_path, ("REDIS_CLUSTER", "REDIS_URL", *_PLAIN_REDIS, "CACHES", "CHANNEL_LAYERS"),
                        **given, CACHE_URL="redis://plain:6379/2")
    assert seen["REDIS_CLUSTER"] is True and seen["REDIS_URL"] == "redis://10.0.0.1:7000/0"
    assert [seen[name] for name in _PLAIN_REDIS] == [f"redis://plain:6379/{n}" for n in range(3)]
    assert seen["CACHES"]["default"]["LOCATION"] == "redis://plain:6379/2"
    assert seen["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]["address"] == "redis://plain:6379/1"


# --- Content-Security-Policy of the pages -------------------------------------------------------

def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {d[0]: d[1:] for d in directives}


@pytest.mark.django_db
def test_the_pages_carry_a_policy_that_runs_only_our_own_scripts_and_styles(client, make_session):
    session = make_session()
    for path in ("/", f"/sessions/{session.pk}/", "/login/", "/register/"):
        response = client.get(path)
        assert response.status_code == 200, path
        policy = _policy(response["Content-Security-Policy"])
        for directive in ("script-src", "style-src"):
            assert policy[directive][0] == "'self'" and "'unsafe-inline'" not in policy[directive], (path, policy)
        assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"] and response["X-Frame-Options"] == "DENY"
        assert b"<script>" not in response.content and b" style=" not in response.content, path


@pytest.mark.django_db
def test_the_admins_inline_blocks_run_by_the_nonce_of_the_request(admin_client):
    response = admin_client.get("/admin/accounts/user/")
    assert response.status_code == 200
    [nonce] = {v.removeprefix("'nonce-").removesuffix("'")
               for v in _policy(response["Content-Security-Policy"])["style-src"] if v.startswith("'nonce-")}
    assert f'nonce="{nonce}"'.encode() in response.content
    assert admin_client.get("/admin/accounts/user/")["Content-Security-Policy"] != response["Content-Security-Policy"]


# --- Django's cache: JSON, not pickle -----------------------------------------------------------

_unpickled = []


def _mark_unpickled():
    _unpickled.append(True)


class _Payload:
    def __reduce__(self):
        return _mark_unpickled, ()


def _raw_cache():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def test_the_cache_stores_json(settings):
    from django.core.cache import cache

    cache.set("probe", {"user": "u-1", "weights": [1.5, 2]})
    assert json.loads(_raw_cache().get(cache.make_key("probe"))) == {"user": "u-1", "weights": [1.5, 2]}
    assert cache.get("probe") == {"user": "u-1", "weights": [1.5, 2]}


def test_a_pickle_planted_in_the_cache_is_never_unpickled():
    from django.core.cache import cache

    _unpickled.clear()
    _raw_cache().set(cache.make_key("planted"), pickle.dumps(_Payload()))
    try:
        cache.get("planted")
    except ValueError:  # not JSON: refused
        pass
    assert _unpickled == []


@pytest.mark.django_db
def test_a_login_session_round_trips_through_the_cache(client, make_user):
    from django.contrib.sessions.backends.cached_db import KEY_PREFIX, SessionStore
    from django.core.cache import cache

    user = make_user()
    client.force_login(user)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    cached = json.loads(_raw_cache().get(cache.make_key(KEY_PREFIX + session_key)))
    assert cached["_auth_user_id"] == str(user.pk)
    assert SessionStore(session_key=session_key)["_auth_user_id"] == str(user.pk)
    page = client.get("/")
    assert page.status_code == 200 and user.username.encode() in page.content
