"""Bidders and admins: the custom user with a UUID id, a scoring weight and a token version."""

import uuid

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q
from django.utils.crypto import salted_hmac

from accounts.usernames import username_fold, username_normalize, username_skeleton


class UserManager(DjangoUserManager):
    """Finds a user by name as login compares names: NFKC and case-insensitive (accounts.usernames)."""

    def _natural_key_query(self, username: str):
        name = username_normalize(username)
        # The skeleton column is unique and indexed; a row registered before it existed may lack
        # one (0002's backfill leaves a look-alike of an older name empty), hence the exact name too.
        return name, self.filter(Q(username_skeleton=username_skeleton(name)) | Q(username=name))

    def _pick(self, name: str, candidates: list["User"]) -> "User":
        exact = [user for user in candidates if user.username == name]
        same = exact or [user for user in candidates if username_fold(user.username) == username_fold(name)]
        if not same:
            raise self.model.DoesNotExist(f"No user named {name!r}.")
        return same[0]

    def get_by_natural_key(self, username: str) -> "User":
        name, query = self._natural_key_query(username)
        return self._pick(name, list(query[:10]))

    async def aget_by_natural_key(self, username: str) -> "User":
        name, query = self._natural_key_query(username)
        return self._pick(name, [user async for user in query[:10]])


def token_version_bump(user_id: object) -> int | None:
    """Move the user's token version on by one in PostgreSQL (one UPDATE ... SET token_version =
    token_version + 1: atomic whatever else is saving the row) and return the new version, or None
    if there is no such user. Every token carrying an older version is refused once the Redis user
    hash has the new one (accounts.receivers, accounts.services.user_tokens_revoke)."""
    if not User.objects.filter(pk=user_id).update(token_version=F("token_version") + 1):
        return None
    return User.objects.filter(pk=user_id).values_list("token_version", flat=True).get()


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("email address", unique=True)
    # The bidder's weight in the scoring rule (gamma * weight). Admin-editable.
    weight = models.FloatField(default=1.0)
    # Tokens carrying an older version are refused. Moved on only by token_version_bump (password
    # change, unusable password, deactivation, logout, "log out everywhere"), never by a save.
    token_version = models.PositiveIntegerField(default=0)
    # accounts.usernames.username_skeleton(username): two users never share one, so no name can be
    # registered that looks like a taken one. Empty only for rows that bypassed save() (bulk inserts).
    username_skeleton = models.TextField(unique=True, null=True, blank=True, editable=False)

    objects = UserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(weight__gte=0) & models.Q(weight__lte=1_000_000),
                name="user_weight_in_range",
            ),
        ]

    # set_unusable_password() was called since the last save.
    _password_unusable = False
    # The username as loaded, to tell a rename (its skeleton is recomputed) from a save that keeps it.
    _loaded_username: str | None = None

    @classmethod
    def from_db(cls, db, field_names, values, **kwargs):
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._loaded_username = instance.__dict__.get("username")
        return instance

    @property
    def is_admin(self) -> bool:
        return self.is_staff

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self._password_unusable = True

    def get_session_auth_hash(self) -> str:
        """Django's login sessions keep this hash and end when it changes: with the token version
        in it, whatever revokes the user's tokens ends their login sessions too."""
        return salted_hmac("accounts.User.get_session_auth_hash", f"{self.password}:{self.token_version}",
                           algorithm="sha256").hexdigest()

    def validate_unique(self, exclude=None) -> None:
        super().validate_unique(exclude)
        if (exclude is None or "username" not in exclude) and self.username and self._skeleton_taken():
            raise ValidationError({"username": "That username is taken, or looks like one that is."})

    def _skeleton_taken(self) -> bool:
        return User.objects.filter(username_skeleton=username_skeleton(self.username)).exclude(pk=self.pk).exists()

    def save(self, **kwargs) -> None:
        """Saves the row but never its token version, and moves the version on, in the same
        transaction, when this save changes the password (set_password; not check_password's
        rehash, which Django marks by clearing `_password`), makes it unusable, or deactivates the
        user. A form or a shell holding an instance read before a revocation thus cannot write the
        older version back."""
        if self._state.adding or kwargs.get("force_insert"):
            self.username_skeleton = username_skeleton(self.username)
            super().save(**kwargs)
        else:
            self._save_existing(**kwargs)
        self._loaded_username, self._password_unusable = self.username, False

    def _save_existing(self, *, update_fields=None, **kwargs) -> None:
        if update_fields is None:
            deferred = self.get_deferred_fields()
            update_fields = [f.attname for f in self._meta.concrete_fields
                             if not f.primary_key and f.attname not in deferred]
        fields = set(update_fields) - {"token_version", "username_skeleton"}
        revoke = "password" in fields and (self._password is not None or self._password_unusable)
        deactivate = "is_active" in fields and not self.is_active
        if "username" in fields and self.username != self._loaded_username:
            self.username_skeleton = username_skeleton(self.username)
            fields.add("username_skeleton")
        with transaction.atomic():
            # Deactivation revokes when the row was active (decided by the row, not by this
            # instance's idea of it): saving a user who is already inactive changes nothing.
            deactivated = deactivate and User.objects.filter(pk=self.pk, is_active=True).update(
                token_version=F("token_version") + 1) > 0
            super().save(update_fields=fields, **kwargs)
            if revoke:
                self.token_version = token_version_bump(self.pk)
            elif deactivated:
                self.token_version = User.objects.filter(pk=self.pk).values_list("token_version", flat=True).get()
