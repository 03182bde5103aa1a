"""The audit trail as the API and the admin show it: one entry per change, newest first."""

import uuid
from dataclasses import dataclass

from accounts.models import User
from history.models import SESSION_FIELDS, USER_FIELDS, SessionChange, UserChange

# The API's model names, their event models, tracked fields and the names the contract uses.
TRAILS = {
    "user": (UserChange, USER_FIELDS, {"is_staff": "is_admin"}),
    "session": (SessionChange, SESSION_FIELDS, {}),
}


@dataclass(frozen=True, slots=True)
class Change:
    at: object
    actor: str | None
    action: str
    changes: dict[str, list]


def audit_trail(*, model: str, object_id: str) -> list[Change]:
    """Every recorded change of one user or session, newest first; [] for an unknown id.
    `changes` maps each field that changed to [old, new] (old is None on create)."""
    event_model, tracked, names = TRAILS[model]
    try:
        object_id = str(uuid.UUID(str(object_id)))
    except ValueError:
        return []
    events = list(event_model.objects.filter(pgh_obj_id=object_id).select_related("pgh_context")
                  .order_by("pgh_created_at", "pgh_id"))
    actor_ids = {str(e.pgh_context.metadata["user"]) for e in events
                 if e.pgh_context is not None and e.pgh_context.metadata.get("user")}
    usernames = {str(pk): name for pk, name in User.objects.filter(pk__in=actor_ids).values_list("pk", "username")}
    trail, previous = [], None
    for event in events:
        now = {field: getattr(event, field) for field in tracked}
        changed = {names.get(field, field): [previous[field] if previous else None, value]
                   for field, value in now.items() if previous is None or previous[field] != value}
        user = event.pgh_context.metadata.get("user") if event.pgh_context is not None else None
        trail.append(Change(at=event.pgh_created_at, actor=usernames.get(str(user)) if user else None,
                            action="create" if event.pgh_label == "create" else "update", changes=changed))
        previous = now
    return trail[::-1]
