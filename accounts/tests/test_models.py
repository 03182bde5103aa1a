import io
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.management.commands import changepassword
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction

from accounts.models import User
from accounts.services import user_tokens_revoke
from accounts.user_cache import local_clear, user_hash_key
from core.redis import get_redis

pytestmark = pytest.mark.django_db


def test_user_ids_are_uuids_and_weight_defaults_to_one(make_user):
    user = make_user()
    assert len(str(user.pk)) == 36
    assert user.weight == 1.0
    assert user.is_admin is False


def test_email_is_unique(make_user):
    make_user(email="same@example.test")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(email="same@example.test")


def test_negative_weight_is_refused(make_user):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(weight=-1)


def test_changing_the_password_bumps_the_token_version(make_user):
    user = make_user()
    before = user.token_version
    user.set_password("another-pass-456")
    user.save()
    assert User.objects.get(pk=user.pk).token_version == before + 1


# --- Revocation: the token version moves on in PostgreSQL, then in the Redis user hash ----------


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """A newer hasher than the fixtures' MD5, cheap enough for tests."""

    iterations = 1_000


NEWER_HASHER_FIRST = [f"{__name__}.FastPBKDF2PasswordHasher", "django.contrib.auth.hashers.MD5PasswordHasher"]


def redis_version(user) -> int:
    return int(get_redis().hget(user_hash_key(user.pk), "ver"))


def db_version(user) -> int:
    return User.objects.values_list("token_version", flat=True).get(pk=user.pk)


async def status_of(api, token: str) -> int:
    local_clear()  # every process's local auth cache has expired
    return (await api.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})).status_code


@pytest.mark.django_db(transaction=True)
async def test_a_password_rehash_at_login_keeps_tokens_and_a_later_change_and_save_keep_them_revoked(
        api, make_user, token_for, settings):
    """check_password upgrading the hash used to move the version in Redis but not in PostgreSQL: the
    user's tokens stopped working, a later password change left the post-login token alive, and a
    later save brought revoked tokens back."""
    user = await sync_to_async(make_user)(username="heidi", password="old-pass-12345")  # an MD5 hash
    before_login = token_for(user)
    settings.PASSWORD_HASHERS = NEWER_HASHER_FIRST

    login = await api.post("/api/auth/login", json={"username": "heidi", "password": "old-pass-12345"})
    assert login.status_code == 200, login.text
    from_login = login.json()["access_token"]
    assert (await User.objects.aget(pk=user.pk)).password.startswith("pbkdf2_sha256$1000$")  # upgraded
    # A rehash is not a password change: every token keeps working, and both stores agree.
    assert await status_of(api, before_login) == 200
    assert await status_of(api, from_login) == 200
    assert await sync_to_async(db_version)(user) == await sync_to_async(redis_version)(user) == user.token_version

    change = await api.post("/api/auth/password", headers={"Authorization": f"Bearer {from_login}"},
                            json={"old_password": "old-pass-12345", "new_password": "new-pass-67890"})
    assert change.status_code == 200, change.text
    after_change = change.json()["access_token"]
    assert await status_of(api, before_login) == 401
    assert await status_of(api, from_login) == 401
    assert await status_of(api, after_change) == 200

    # An unrelated save of an instance read before all this (a form, a shell) changes nothing.
    user.weight = 2.5
    await sync_to_async(user.save)()
    assert await status_of(api, before_login) == 401
    assert await status_of(api, from_login) == 401
    assert await status_of(api, after_change) == 200
    assert await sync_to_async(db_version)(user) == await sync_to_async(redis_version)(user)


@pytest.mark.django_db(transaction=True)
def test_a_save_of_an_instance_read_before_a_revocation_does_not_bring_the_old_version_back(make_user):
    user = make_user()
    stale = User.objects.get(pk=user.pk)
    user_tokens_revoke(user_id=str(user.pk))
    stale.first_name = "Stale"
    stale.save()
    assert db_version(user) == redis_version(user) == 1
    assert User.objects.get(pk=user.pk).first_name == "Stale"


@pytest.mark.django_db(transaction=True)
def test_an_unusable_password_revokes_tokens(make_user):
    user = make_user()
    user.set_unusable_password()
    user.save()
    assert db_version(user) == redis_version(user) == user.token_version == 1


@pytest.mark.django_db(transaction=True)
def test_deactivation_revokes_tokens_and_reactivation_does_not_bring_them_back(make_user):
    user = make_user()
    user.is_active = False
    user.save()
    assert db_version(user) == redis_version(user) == 1
    user.is_active = True
    user.save()
    user.is_active = True  # saving an active user again, or an inactive one again, moves nothing
    user.save()
    assert db_version(user) == redis_version(user) == 1


@pytest.mark.django_db(transaction=True)
def test_manage_py_changepassword_revokes_tokens(make_user):
    user = make_user(username="ivan")
    with mock.patch.object(changepassword.Command, "_get_pass", return_value="brand-new-pass-123"):
        call_command("changepassword", "ivan", stdout=io.StringIO())
    assert db_version(user) == redis_version(user) == 1
    assert User.objects.get(pk=user.pk).check_password("brand-new-pass-123")


@pytest.mark.django_db(transaction=True)
def test_a_rehash_alone_moves_no_version(make_user, settings):
    user = make_user(password="old-pass-12345")
    settings.PASSWORD_HASHERS = NEWER_HASHER_FIRST
    assert user.check_password("old-pass-12345")
    assert db_version(user) == redis_version(user) == user.token_version == 0


def test_a_look_alike_username_cannot_be_saved_twice(make_user):
    make_user(username="admin")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(username="аdmin")  # Cyrillic а


def test_model_validation_names_the_look_alike_username(make_user):
    make_user(username="admin")
    candidate = User(username="ＡＤＭＩＮ", email="x@example.test")
    with pytest.raises(ValidationError) as caught:
        candidate.full_clean(exclude=["password"])
    assert "username" in caught.value.message_dict
