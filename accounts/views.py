"""Login, registration, password-change, password-reset and logout pages: Django forms over
accounts.services (the same validation and abuse limits as the API), then Django's session cookie,
which the API also accepts. The reset is Django's own (its views, forms and token), in our templates."""

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts.forms import LoginForm, PasswordChangeForm, RegisterForm
from accounts.limits import password_reset_allowed_sync
from accounts.services import user_login, user_password_change, user_register
from core.exceptions import ApplicationError, ErrorCode
from core.ratelimit import client_address


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


def _page(request: HttpRequest, template: str, context: dict, error: ApplicationError | None) -> HttpResponse:
    response = render(request, template, context, status=_page_status(error) if error else 200)
    if error is not None and error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            # The service is async (it shares the API's login limits); under ASGI this runs on the server's loop.
            user = async_to_sync(user_login)(request=request, username=form.cleaned_data["username"],
                                             password=form.cleaned_data["password"])
        except ApplicationError as exc:
            error = exc
            form.add_error(None, error.detail)
        else:
            login(request, user)
            return redirect(next_url(request))
    return _page(request, "accounts/login.html", _context(request, form), error)


@require_http_methods(["GET", "POST"])
def register_page(request: HttpRequest) -> HttpResponse:
    form = RegisterForm(request.POST or None)
    error = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = user_register(username=data["username"], email=data["email"], password=data["password"],
                                 address=client_address(request))
        except ApplicationError as exc:
            error = exc
            _add_service_error(form, error)
        else:
            login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
            return redirect(next_url(request))
    return _page(request, "accounts/register.html", _context(request, form), error)


@login_required
@require_http_methods(["GET", "POST"])
def password_change_page(request: HttpRequest) -> HttpResponse:
    """Change the signed-in user's password. Every other login session and every token of the
    user stops working; this session goes on (its auth hash is renewed)."""
    form = PasswordChangeForm(request.POST or None)
    error = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = user_password_change(user_id=str(request.user.pk), old_password=data["old_password"],
                                        new_password=data["new_password"], address=client_address(request))
        except ApplicationError as exc:
            error = exc
            _add_service_error(form, error)
        else:
            update_session_auth_hash(request, user)
            return render(request, "accounts/password_changed.html", {"next": next_url(request, "")})
    return _page(request, "accounts/password_change.html", _context(request, form), error)


@require_http_methods(["GET", "POST"])
def logout_page(request: HttpRequest) -> HttpResponse:
    """POST logs out; GET only asks (a link must not log anybody out)."""
    if request.method == "POST":
        logout(request)
        return redirect(next_url(request))
    return render(request, "accounts/logout.html", {"next": next_url(request, "")})


class PasswordResetPage(auth_views.PasswordResetView):
    """"Forgot your password?": Django's reset (a mail with a one-time link, sent only to an active
    account's address, the same answer either way), under PASSWORD_RESETS_PER_ADDRESS. The link's
    token is spent by the new password (it hashes the password); the new password revokes every
    token and login session of the user (User.save)."""

    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        try:
            password_reset_allowed_sync(address=client_address(self.request))
        except ApplicationError as exc:
            form.add_error(None, exc.detail)
            return _page(self.request, self.template_name, self.get_context_data(form=form), exc)
        return super().form_valid(form)


password_reset_page = PasswordResetPage.as_view()
password_reset_sent_page = auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_sent.html")
password_reset_confirm_page = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html", success_url=reverse_lazy("password_reset_complete"))
password_reset_complete_page = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html")
