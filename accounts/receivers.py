"""Keep the Redis user hash (auth layer 2, accounts.user_cache) in step with PostgreSQL, after commit."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import User
from accounts.user_cache import user_cache_drop, user_cache_refresh


@receiver(post_save, sender=User, dispatch_uid="accounts.user_saved")
def user_saved(sender, instance: User, **kwargs) -> None:
    # The committed row, not the instance: its token version may be older than PostgreSQL's (the
    # instance was read before a revocation; User.save never writes the version).
    user_id = instance.pk
    transaction.on_commit(lambda: user_cache_refresh(user_id))


@receiver(post_delete, sender=User, dispatch_uid="accounts.user_deleted")
def user_deleted(sender, instance: User, **kwargs) -> None:
    user_id = str(instance.pk)
    transaction.on_commit(lambda: user_cache_drop(user_id))
