"""Bidders and admins: the custom user with a UUID id, a scoring weight and a token version."""

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("email address", unique=True)
    # The bidder's weight in the scoring rule (gamma * weight). Admin-editable.
    weight = models.FloatField(default=1.0)
    # Bumped on password change, deactivation or forced logout: tokens carrying an older
    # version are refused.
    token_version = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(weight__gte=0) & models.Q(weight__lte=1_000_000),
                name="user_weight_in_range",
            ),
        ]

    @property
    def is_admin(self) -> bool:
        return self.is_staff

    def set_password(self, raw_password: str | None) -> None:
        # A changed password revokes every token issued before it.
        if self.password:
            self.token_version += 1
        super().set_password(raw_password)
