"""Keep a session's Redis parameter hash in step with PostgreSQL after every edit (admin, API), and
refuse to delete a user whose bid is still only in Redis (PROTECT covers the ones in PostgreSQL)."""

from django.db import transaction
from django.db.models import ProtectedError
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from accounts.models import User
from auctions import live
from auctions.models import BiddingSession
from auctions.selectors import live_bid_sessions


@receiver(post_save, sender=BiddingSession, dispatch_uid="auctions.session_saved")
def session_saved(sender, instance: BiddingSession, **kwargs) -> None:
    session_id = instance.pk

    def store() -> None:
        # The committed row, not the instance: an edit saved from a form loaded before a
        # settlement must not make Redis forget that the session is settled.
        session = BiddingSession.objects.filter(pk=session_id).first()
        if session is not None:
            live.known_add(session.pk)
            live.params_store(session)

    transaction.on_commit(store)


@receiver(post_delete, sender=BiddingSession, dispatch_uid="auctions.session_deleted")
def session_deleted(sender, instance: BiddingSession, **kwargs) -> None:
    session_id = instance.pk

    def forget() -> None:
        live.known_remove(session_id)
        live.params_forget(session_id)

    transaction.on_commit(forget)


@receiver(pre_delete, sender=User, dispatch_uid="auctions.user_deleting")
def user_deleting(sender, instance: User, **kwargs) -> None:
    """A bid accepted but not yet persisted protects its bidder like a Bid row does."""
    sessions = live_bid_sessions(user_id=str(instance.pk))
    if sessions:
        raise ProtectedError(
            f"{instance.username} has bid in {len(sessions)} open session(s): a bidder who has bid cannot be "
            "deleted; deactivate the account instead.", set())
