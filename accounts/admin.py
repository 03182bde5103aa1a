from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import User


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
