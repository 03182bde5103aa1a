import functools

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.utils.html import format_html
from django.utils.text import capfirst

from accounts.models import User
from accounts.services import user_tokens_revoke, weight_validate
from auctions.selectors import user_has_bids
from core.exceptions import ApplicationError, ErrorCode
from history.admin import AuditTrailHistoryMixin


@admin.register(User)
class UserAdmin(AuditTrailHistoryMixin, DjangoUserAdmin):
    audit_trail_model = "user"
    list_display = ("username", "email", "weight", "is_staff", "is_active", "date_joined")
    list_editable = ("weight",)
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("username", "email")
    ordering = ("username",)
    fieldsets = DjangoUserAdmin.fieldsets + (("Bidding", {"fields": ("weight", "token_version")}),)
    readonly_fields = ("token_version", "last_login", "date_joined")
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "weight", "password1", "password2")}),
    )
    actions = ["log_out_everywhere"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        """The weight is checked by accounts.services.weight_validate on every form of this admin
        (add, change, and the list's editable column): the API's rule in words, not the name of the
        database constraint."""
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "weight":
            field.validators.append(_weight_in_words)
        return field

    @admin.action(description="Log out everywhere (revoke every token and login session)")
    def log_out_everywhere(self, request, queryset):
        """Revoke every token and login session of the selected users (they can sign in again)."""
        user_ids = list(queryset.values_list("pk", flat=True))
        for user_id in user_ids:
            user_tokens_revoke(user_id=str(user_id))
        self.message_user(request, f"Logged out everywhere: {len(user_ids)} user(s). Their tokens stop working "
                                   "within a few seconds.", messages.SUCCESS)

    def get_deleted_objects(self, objs, request):
        """A bidder who has bid cannot be deleted (their bids are promises): say what to do instead."""
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        for user in objs:
            if user_has_bids(user_id=str(user.pk)):
                # Bids are read-only in the admin, so Django would only say "no permission to delete
                # bids"; the protected-objects page says why and what to do. Deletion stays refused.
                perms_needed = set()
                protected.insert(0, format_html(
                    "{} has bid in an auction: a bidder who has bid cannot be deleted. Deactivate the account "
                    "instead (untick “Active” on its page): it can no longer sign in or bid.", user.username))
        return deleted, model_count, perms_needed, protected


def _weight_in_words(value: float) -> None:
    try:
        weight_validate(weight=value)
    except ApplicationError as exc:
        raise ValidationError(capfirst(exc.detail.removeprefix(f"{exc.field}: ")), code="weight") from None


# --- The admin's login under the login limits -------------------------------------------------
# The limits themselves are in the authentication backend (accounts.backends), shared with the API
# and the pages; here a refusal becomes the admin's own login page with the reason, status 429 and
# Retry-After, instead of an exception. `login_form` is the admin site's documented hook; the view
# is wrapped on the default site because its status cannot be set from the form.


class LimitedAdminAuthenticationForm(AdminAuthenticationForm):
    refusal: ApplicationError | None = None

    def clean(self):
        try:
            return super().clean()
        except ApplicationError as exc:
            if exc.code != ErrorCode.RATE_LIMITED:
                raise
            self.refusal = exc
            raise ValidationError(exc.detail, code=str(exc.code)) from None


def _refusals_as_429(login_view):
    @functools.wraps(login_view)
    def login(request, extra_context=None):
        response = login_view(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        refusal = getattr(form, "refusal", None)
        if refusal is not None:
            response.status_code = 429
            response["Retry-After"] = str(refusal.retry_after)
        return response

    return login


admin.site.login_form = LimitedAdminAuthenticationForm
admin.site.login = _refusals_as_429(admin.site.login)
