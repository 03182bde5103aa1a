"""Naming who acts, for the audit trail's triggers."""

import pghistory


def acting_as(user_id: object):
    """A context (`with acting_as(user.id): ...`) in which every tracked change is recorded as made
    by this user. Enter it in the thread that writes: pghistory keeps it per thread."""
    return pghistory.context(user=str(user_id) if user_id else None)
