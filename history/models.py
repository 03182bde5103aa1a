"""Event models of django-pghistory: a PostgreSQL trigger on each tracked table writes a snapshot of
the tracked fields on insert and on every update that changes one of them (admin, API, a shell
`update()`, raw SQL alike). The acting user comes from pghistory's context: the HistoryMiddleware on
the pages and the admin, `history.services.acting_as` in the API and commands; none for a shell or
system change."""

import pghistory

from accounts.models import User
from auctions.models import BiddingSession

# What can change an outcome. (A user's admin flag is `is_staff`, shown as `is_admin`.)
USER_FIELDS = ["weight", "is_staff", "is_active"]
# A session's terms: its effective `end_time` is not one (soft close moves it as bids arrive); the
# end the admin set is `scheduled_end_time`.
SESSION_FIELDS = ["upset_price", "inventory", "alpha", "beta", "gamma", "start_time", "scheduled_end_time",
                  "extend_window_seconds", "extend_by_seconds", "hard_end_time"]

UserChange = pghistory.create_event_model(
    User,
    pghistory.InsertEvent("create"),
    pghistory.UpdateEvent("update", condition=pghistory.AnyChange(*USER_FIELDS)),
    fields=USER_FIELDS,
    model_name="UserChange",
    app_label="history",
    abstract=False,
)

SessionChange = pghistory.create_event_model(
    BiddingSession,
    pghistory.InsertEvent("create"),
    pghistory.UpdateEvent("update", condition=pghistory.AnyChange(*SESSION_FIELDS)),
    fields=SESSION_FIELDS,
    model_name="SessionChange",
    app_label="history",
    abstract=False,
)
