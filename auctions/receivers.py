"""Keep a session's Redis parameter hash in step with PostgreSQL after every edit (admin, API)."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from auctions import live
from auctions.models import BiddingSession


@receiver(post_save, sender=BiddingSession, dispatch_uid="auctions.session_saved")
def session_saved(sender, instance: BiddingSession, **kwargs) -> None:
    transaction.on_commit(lambda: live.params_store(instance))


@receiver(post_delete, sender=BiddingSession, dispatch_uid="auctions.session_deleted")
def session_deleted(sender, instance: BiddingSession, **kwargs) -> None:
    session_id = instance.pk
    transaction.on_commit(lambda: live.params_forget(session_id))
