"""EMAIL_URL (flashbid/email_url.py, flashbid/settings.py): every scheme becomes Django's mailer, user
and password percent-decoded; anything else stops the process at startup with a message that names
the problem and never the password. DEFAULT_FROM_EMAIL and SITE_URL likewise."""

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from flashbid.email_url import mailer_from_url
from tests import processes
from tests.test_settings import PRODUCTION, _check_deploy, _env, _settings_of, _strong_key

SMTP = "django.core.mail.backends.smtp.EmailBackend"


def _smtp(host, port, username="", password="", *, use_tls=False, use_ssl=False) -> dict:
    return {"BACKEND": SMTP, "OPTIONS": {"host": host, "port": port, "username": username, "password": password,
                                         "use_tls": use_tls, "use_ssl": use_ssl, "timeout": 10.0}}


@pytest.mark.parametrize(("url", "mailer"), [
    ("console://", {"BACKEND": "django.core.mail.backends.console.EmailBackend"}),
    ("locmem://", {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}),
    ("file:///var/mail/flash%20bid", {"BACKEND": "core.mail.FilePerMessageBackend",
                                      "OPTIONS": {"file_path": "/var/mail/flash bid"}}),
    ("smtp://mail.example.com", _smtp("mail.example.com", 25)),
    ("smtp://bids:s3cret@mail.example.com:2525", _smtp("mail.example.com", 2525, "bids", "s3cret")),
    # A password with the URL's own delimiters, percent-encoded; so is a user that is an address.
    ("smtp://bids%40example.com:p%40ss%3Aw%2Frd%25@mail.example.com:25",
     _smtp("mail.example.com", 25, "bids@example.com", "p@ss:w/rd%")),
    ("smtp+tls://bids:pw@smtp.example.com", _smtp("smtp.example.com", 587, "bids", "pw", use_tls=True)),
    ("smtp+tls://bids:pw@smtp.example.com:2587", _smtp("smtp.example.com", 2587, "bids", "pw", use_tls=True)),
    ("smtps://bids:pw@smtp.example.com", _smtp("smtp.example.com", 465, "bids", "pw", use_ssl=True)),
    ("SMTP+TLS://bids:pw@[2001:db8::1]:587", _smtp("2001:db8::1", 587, "bids", "pw", use_tls=True)),
])
def test_each_scheme_becomes_its_mailer(url, mailer):
    assert mailer_from_url(url, timeout=10.0) == mailer


@pytest.mark.parametrize(("url", "says"), [
    ("imap://bids:hunter2@mail.example.com", "unknown scheme 'imap'; use one of console://, file://, locmem://, smtp://"),
    ("mail.example.com", "not a URL"),
    ("", "not a URL"),
    ("smtp:mail.example.com", "write smtp:// with two slashes"),
    ("smtp://bids:hunter2@mail.example.com:port", "malformed URL (is the port a number"),
    ("smtp://bids:hunter2@mail.example.com:70000", "malformed URL (is the port a number"),
    ("smtp://", "smtp:// needs a host"),
    ("smtp://bids:hunter2@mail.example.com/inbox", "takes no path"),
    ("smtp://bids:hunter2@mail.example.com?tls=true", "STARTTLS is smtp+tls://"),
    ("file://var/mail", "file:// needs an absolute directory, with three slashes"),
    ("file://", "file:// needs an absolute directory"),
    ("console://stdout", "console:// takes nothing after the scheme"),
])
def test_anything_else_is_refused_naming_the_problem_and_never_the_password(url, says):
    with pytest.raises(ImproperlyConfigured) as refused:
        mailer_from_url(url, timeout=10.0)
    assert str(refused.value).startswith("EMAIL_URL: ") and says in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_without_email_url_mail_goes_to_the_console_from_flashbid(tmp_path):
    seen = _settings_of(tmp_path, ("MAILERS", "DEFAULT_FROM_EMAIL", "SITE_URL"), DEBUG="true", EMAIL_URL="")
    assert seen == {"MAILERS": {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}},
                    "DEFAULT_FROM_EMAIL": "FlashBid <noreply@localhost>", "SITE_URL": "http://localhost:8000"}


def test_without_email_url_production_mails_through_a_local_mail_server(tmp_path):
    """Never the console with DEBUG off: it would mark winners mailed while nobody got a thing. A
    local server that is not there leaves the mail owed (retried) until EMAIL_URL names one."""
    seen = _settings_of(tmp_path, ("MAILERS",), SECRET_KEY=_strong_key(), EMAIL_URL="", **PRODUCTION)
    assert seen["MAILERS"]["default"]["BACKEND"] == SMTP
    assert seen["MAILERS"]["default"]["OPTIONS"] == {"host": "localhost", "port": 25, "username": "", "password": "",
                                                     "use_tls": False, "use_ssl": False, "timeout": 10.0}


def test_check_deploy_refuses_the_console_in_production(tmp_path):
    result = _check_deploy(tmp_path, SECRET_KEY=_strong_key(), EMAIL_URL="console://", **PRODUCTION)
    assert result.returncode != 0 and "mail.E001" in result.stderr


def test_email_url_default_from_and_site_url_come_from_the_environment(tmp_path):
    seen = _settings_of(tmp_path, ("MAILERS", "DEFAULT_FROM_EMAIL", "SITE_URL"), DEBUG="true",
                        EMAIL_URL="smtp+tls://bids%40example.com:p%40ss@smtp.example.com:587",
                        DEFAULT_FROM_EMAIL="Bids <bids@example.com>", SITE_URL="https://bids.example.com/")
    assert seen["MAILERS"]["default"]["OPTIONS"] | {"timeout": None} == {
        "host": "smtp.example.com", "port": 587, "username": "bids@example.com", "password": "p@ss",
        "use_tls": True, "use_ssl": False, "timeout": None}
    assert seen["DEFAULT_FROM_EMAIL"] == "Bids <bids@example.com>"
    assert seen["SITE_URL"] == "https://bids.example.com"  # links append paths that start with /


@pytest.mark.parametrize(("given", "says"), [
    ({"EMAIL_URL": "sendgrid://bids:hunter2@api"}, "EMAIL_URL: unknown scheme 'sendgrid'"),
    ({"SITE_URL": "bids.example.com"}, "SITE_URL must be an http:// or https:// URL"),
])
def test_a_bad_mail_setting_stops_the_process_at_startup(tmp_path, given, says):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=processes.ROOT,
                            env=_env(tmp_path, DEBUG="true", **given), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {says}" in result.stderr
    assert "hunter2" not in result.stderr
