"""EMAIL_URL → the mailer Django sends with (its MAILERS["default"]). The one place that knows the
URL's schemes:

    console://                      each message printed on the process's standard output
    file:///abs/dir                 one .eml file per message in that directory (core.mail)
    smtp://user:pass@host:port      SMTP, plain (port 25 by default)
    smtp+tls://user:pass@host:port  SMTP with STARTTLS (port 587 by default)
    smtps://user:pass@host:port     SMTP over implicit TLS (port 465 by default)
    locmem://                       kept in memory (django.core.mail.outbox), for tests

The user and password are percent-decoded (a password with `@`, `:` or `/` is written `%40`, `%3A`,
`%2F`). Anything else fails at startup with ImproperlyConfigured, naming the problem but never the
URL itself (it may carry the password).

Why not dj-email-url or django-environ: their scheme names are not these (`smtps` means STARTTLS in
dj-email-url, which has no `smtp+tls`; django-environ spells the others `consolemail://` and
`filemail://`), and both fill the EMAIL_* settings that Django 6.1 deprecates for MAILERS.
"""

from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

SMTP = "django.core.mail.backends.smtp.EmailBackend"
BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "core.mail.FilePerMessageBackend",  # Django's own may put two messages in one file
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "smtp": SMTP,
    "smtp+tls": SMTP,
    "smtps": SMTP,
}
SMTP_DEFAULT_PORTS = {"smtp": 25, "smtp+tls": 587, "smtps": 465}


def _fail(problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"EMAIL_URL: {problem}")


def mailer_from_url(url: str, *, timeout: float) -> dict:
    """The MAILERS entry (`{"BACKEND": ..., "OPTIONS": {...}}`) that `url` describes. `timeout`
    bounds each SMTP connect and command, in seconds."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _fail("malformed URL (is the port a number from 1 to 65535?)") from None
    # urlsplit keeps only a scheme's own characters: it cannot carry a password into the message.
    scheme = parts.scheme.lower()
    known = ", ".join(f"{name}://" for name in BACKENDS)
    if scheme not in BACKENDS:
        raise _fail(f"unknown scheme {scheme!r}; use one of {known}" if scheme else f"not a URL; use one of {known}")
    if not url[len(scheme):].startswith("://"):
        raise _fail(f"write {scheme}:// with two slashes")
    if parts.query or parts.fragment:
        raise _fail(f"{scheme}:// takes no query or fragment (STARTTLS is smtp+tls://, implicit TLS smtps://)")

    if scheme in ("console", "locmem"):
        if parts.netloc or parts.path:
            raise _fail(f"{scheme}:// takes nothing after the scheme")
        return {"BACKEND": BACKENDS[scheme]}

    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise _fail("file:// needs an absolute directory, with three slashes: file:///var/mail/flashbid")
        return {"BACKEND": BACKENDS[scheme], "OPTIONS": {"file_path": path}}

    if not parts.hostname:
        raise _fail(f"{scheme}:// needs a host: {scheme}://user:password@host:port")
    if parts.path not in ("", "/"):
        raise _fail(f"{scheme}:// takes no path after the host and port")
    return {
        "BACKEND": SMTP,
        "OPTIONS": {
            "host": parts.hostname,
            "port": port or SMTP_DEFAULT_PORTS[scheme],
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "use_tls": scheme == "smtp+tls",
            "use_ssl": scheme == "smtps",
            "timeout": timeout,
        },
    }
