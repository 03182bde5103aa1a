from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.html import format_html

from accounts.models import User
from auctions.selectors import user_has_bids


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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

    def get_deleted_objects(self, objs, request):
        """A bidder who has bid cannot be deleted (their bids are promises): say what to do instead."""
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        for user in objs:
            if user_has_bids(user_id=str(user.pk)):
                protected.insert(0, format_html(
                    "{} has bid in an auction: a bidder who has bid cannot be deleted. Deactivate the account "
                    "instead (untick “Active” on its page): it can no longer sign in or bid.", user.username))
        return deleted, model_count, perms_needed, protected
