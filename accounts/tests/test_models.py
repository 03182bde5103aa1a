import pytest
from django.db import IntegrityError, transaction

from accounts.models import User

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
