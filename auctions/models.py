"""The auction's durable record: products, bidding sessions, current bids, bid history, rankings."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from auctions.rules import SessionStatus, session_status


class Product(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    # When its picture (ProductPicture) was last set; None: no picture. The pages link to the
    # picture with this as its version.
    picture_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProductPicture(models.Model):
    """A product's picture as served (auctions.services.picture_encode: checked and re-encoded by
    Pillow, at most PICTURE_MAX_SIDE pixels a side). In PostgreSQL, not on a disk: every deploy
    shape serves it with no media volume (auctions.views.product_picture); a row of its own, so
    reading a product never loads its bytes."""

    product = models.OneToOneField(Product, on_delete=models.CASCADE, primary_key=True, related_name="picture")
    data = models.BinaryField()
    content_type = models.CharField(max_length=32)

    def __str__(self) -> str:
        return f"picture of product {self.product_id}"


class BiddingSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="sessions")
    upset_price = models.DecimalField(max_digits=12, decimal_places=2)
    inventory = models.PositiveIntegerField()
    alpha = models.FloatField(default=1.0)
    beta = models.FloatField(default=0.0)
    gamma = models.FloatField(default=0.0)
    start_time = models.DateTimeField()
    # The effective end: the scheduled end, moved later by soft-close extensions (the bid script
    # moves it in Redis; persistence writes it here). Every reader uses this one.
    end_time = models.DateTimeField()
    # The end the admin set; soft close (anti-sniping): an accepted bid ranking within the top K
    # less than `extend_window_seconds` before the effective end moves it to accepted_at +
    # `extend_by_seconds`, never past `hard_end_time` (auctions/lua/place_bid.lua).
    scheduled_end_time = models.DateTimeField()
    extend_window_seconds = models.PositiveIntegerField(default=0)
    extend_by_seconds = models.PositiveIntegerField(default=0)
    hard_end_time = models.DateTimeField(null=True, blank=True)
    # Only `settled` is stored for good; scheduled/active/ended follow from the clock
    # (see `current_status`). The stored value is kept in step by the settlement and is what
    # the admin filters on.
    status = models.CharField(
        max_length=16, choices=SessionStatus.choices, default=SessionStatus.SCHEDULED
    )
    final_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    # Set by a settlement that found a mismatch it could not resolve (it settles all the same).
    settlement_alert = models.TextField(blank=True, default="")
    # The hex SHA-256 of the bid log in its canonical form (auctions.verification), set at settlement.
    log_digest = models.CharField(max_length=64, blank=True, default="")
    # The independent audit of the settlement (manage.py audit_session): None until it ran.
    audit_verified = models.BooleanField(null=True, blank=True)
    audit_checked_at = models.DateTimeField(null=True, blank=True)
    audit_detail = models.TextField(blank=True, default="")
    # The winners' result mail is owed (auctions.result_mail): when the settle tick's catch-up may
    # queue it (again) if the task sent after the commit has not finished it by then. Set by the
    # settlement of a session with winners, cleared once every winner was mailed; NULL for sessions
    # settled before the result mail existed, which are never mailed.
    result_mail_due_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="created_sessions",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start_time"]
        constraints = [
            models.CheckConstraint(condition=Q(upset_price__gt=0), name="session_upset_price_positive"),
            models.CheckConstraint(condition=Q(inventory__gte=1), name="session_inventory_at_least_one"),
            models.CheckConstraint(
                condition=Q(alpha__gte=0) & Q(beta__gte=0) & Q(gamma__gte=0),
                name="session_weights_non_negative",
            ),
            models.CheckConstraint(condition=Q(end_time__gt=F("start_time")), name="session_end_after_start"),
            models.CheckConstraint(condition=Q(scheduled_end_time__gt=F("start_time")),
                                   name="session_scheduled_end_after_start"),
            models.CheckConstraint(condition=Q(end_time__gte=F("scheduled_end_time")),
                                   name="session_end_not_before_scheduled"),
            models.CheckConstraint(condition=Q(extend_window_seconds=0) | Q(extend_by_seconds__gte=1),
                                   name="session_extension_needs_length"),
            models.CheckConstraint(condition=Q(hard_end_time__isnull=True)
                                   | (Q(hard_end_time__gt=F("scheduled_end_time"))
                                      & Q(hard_end_time__gte=F("end_time"))),
                                   name="session_hard_end_after_end"),
            models.CheckConstraint(
                condition=~Q(status=SessionStatus.SETTLED) | Q(settled_at__isnull=False),
                name="session_settled_has_settled_at",
            ),
            models.CheckConstraint(
                condition=Q(final_price__isnull=True) | Q(final_price__gt=0),
                name="session_final_price_positive",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "end_time"], name="session_status_end_idx"),
            models.Index(fields=["start_time"], name="session_start_idx"),
            models.Index(fields=["result_mail_due_at"], condition=Q(result_mail_due_at__isnull=False),
                         name="session_result_mail_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} ({self.start_time:%Y-%m-%d %H:%M})"

    def save(self, *args, **kwargs) -> None:
        # A session made with one end (the API, the admin, commands, tests) starts with its
        # effective end at the scheduled one.
        if self.scheduled_end_time is None:
            self.scheduled_end_time = self.end_time
        if self.end_time is None:
            self.end_time = self.scheduled_end_time
        super().save(*args, **kwargs)

    def current_status(self, now) -> str:
        """The lifecycle state at `now` (rules.session_status)."""
        return session_status(now=now, start=self.start_time, end=self.end_time,
                              settled=self.status == SessionStatus.SETTLED)


def status_q(status: str, now) -> Q:
    """The sessions whose state at `now` is `status`, as a query condition: rules.session_status
    in SQL, for the list filters and the stored-status refresh."""
    if status == SessionStatus.SETTLED:
        return Q(status=SessionStatus.SETTLED)
    unsettled = ~Q(status=SessionStatus.SETTLED)
    if status == SessionStatus.SCHEDULED:
        return unsettled & Q(start_time__gt=now)
    if status == SessionStatus.ACTIVE:
        return unsettled & Q(start_time__lte=now, end_time__gt=now)
    return unsettled & Q(end_time__lte=now)


class Bid(models.Model):
    """The current (highest) bid of one bidder in one session, as last accepted by the engine."""

    session = models.ForeignKey(BiddingSession, on_delete=models.CASCADE, related_name="bids")
    # PROTECT: a bidder who has bid cannot be deleted (deactivate instead): their bid is a promise.
    bidder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bids")
    price = models.DecimalField(max_digits=12, decimal_places=2)
    score = models.FloatField()
    seq = models.BigIntegerField()
    accepted_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "bidder"], name="bid_one_per_bidder"),
            models.CheckConstraint(condition=Q(price__gt=0), name="bid_price_positive"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="bid_seq_positive"),
        ]
        indexes = [
            # The settled order: score desc, then the earlier accepted bid.
            models.Index(fields=["session", "-score", "seq"], name="bid_session_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.bidder_id} @ {self.price}"


class BidEvent(models.Model):
    """Every accepted bid, in acceptance order (append-only history).

    Written only by persist_bids, in batches of thousands. Its relations have no database-level
    foreign-key constraint: checking them cost a fifth of persist throughput (a key-share lock on
    the user and session row per event, at commit). The writer joins each batch to accounts_user
    and only writes sessions that exist. A user who has bid cannot be deleted (Django's PROTECT here
    and on Bid, and auctions.receivers for bids still only in Redis); deleting a session still
    deletes its events (Django's CASCADE)."""

    session = models.ForeignKey(BiddingSession, on_delete=models.CASCADE, related_name="bid_events",
                                db_constraint=False, db_index=False)  # (session, seq) and (session, bidder) index it
    bidder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bid_events",
                               db_constraint=False)
    seq = models.BigIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)
    score = models.FloatField()
    weight = models.FloatField()
    accepted_at = models.DateTimeField()
    persisted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="bidevent_unique_seq"),
            models.CheckConstraint(condition=Q(price__gt=0), name="bidevent_price_positive"),
        ]
        indexes = [models.Index(fields=["session", "bidder"], name="bidevent_session_bidder_idx")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.bidder_id} @ {self.price}"


class Ranking(models.Model):
    """The settled order of one session: written once, by the settlement."""

    session = models.ForeignKey(BiddingSession, on_delete=models.CASCADE, related_name="rankings")
    bidder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rankings")
    rank = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)
    score = models.FloatField()
    seq = models.BigIntegerField()
    is_winner = models.BooleanField()
    # When this winner's result mail was handed to the mail server (auctions.result_mail); marked in
    # the transaction that holds the row's lock while sending, so it is never sent twice.
    result_mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["session", "rank"], name="ranking_unique_rank"),
            models.UniqueConstraint(fields=["session", "bidder"], name="ranking_unique_bidder"),
            models.CheckConstraint(condition=Q(rank__gte=1), name="ranking_rank_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.bidder_id}"


