"""Login, registration and logout pages: Django forms over accounts.services (the same validation
and login rate limit as the API), then Django's session cookie, which the API also accepts."""

from asgiref.sync import async_to_sync
from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts.forms import LoginForm, RegisterForm
from accounts.services import user_login, user_register
from core.exceptions import ApplicationError, ErrorCode


def next_url(request: HttpRequest, fallback: str = "/") -> str:
    """Where to go after the form: `next` if it points into this site, else `fallback`."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return fallback


def _add_service_error(form, exc: ApplicationError) -> None:
    """Next to the field the service named (its detail without the "field: " prefix), else above the form."""
    if exc.field in form.fields:
        form.add_error(exc.field, exc.detail.removeprefix(f"{exc.field}: "))
    else:
        form.add_error(None, exc.detail)


def _context(request: HttpRequest, form) -> dict:
    # nav_next: the header's login/register links keep the destination instead of pointing here.
    return {"form": form, "next": next_url(request, ""), "nav_next": next_url(request)}


def _page_status(exc: ApplicationError) -> int:
    # A form with errors is a 200 page, except when the client must slow down.
    return 429 if exc.code == ErrorCode.RATE_LIMITED else 200


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            # The service is async (it shares the API's rate limit); under ASGI this runs on the server's loop.
            user = async_to_sync(user_login)(request=request, username=form.cleaned_data["username"],
                                             password=form.cleaned_data["password"])
        except ApplicationError as exc:
            form.add_error(None, exc.detail)
            status = _page_status(exc)
        else:
            login(request, user)
            return redirect(next_url(request))
    return render(request, "accounts/login.html", _context(request, form), status=status)


@require_http_methods(["GET", "POST"])
def register_page(request: HttpRequest) -> HttpResponse:
    form = RegisterForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = user_register(username=data["username"], email=data["email"], password=data["password"])
        except ApplicationError as exc:
            _add_service_error(form, exc)
            status = _page_status(exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(next_url(request))
    return render(request, "accounts/register.html", _context(request, form), status=status)


@require_http_methods(["GET", "POST"])
def logout_page(request: HttpRequest) -> HttpResponse:
    """POST logs out; GET only asks (a link must not log anybody out)."""
    if request.method == "POST":
        logout(request)
        return redirect(next_url(request))
    return render(request, "accounts/logout.html", {"next": next_url(request, "")})
