from django.contrib import admin, messages
from django.db.models import Count, Max
from django.http import StreamingHttpResponse
from django.utils import timezone

from auctions import exports
from auctions.models import Bid, BiddingSession, BidEvent, Product, Ranking, SessionStatus
from auctions.rules import end_after_reschedule
from core.streaming import in_batches
from history.admin import AuditTrailHistoryMixin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Bids, events and rankings are written by the engine and the settlement only."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name", "description")


class RankingInline(admin.TabularInline):
    model = Ranking
    fields = ("rank", "bidder", "price", "score", "is_winner", "result_mailed_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("rank",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("bidder")


@admin.register(BiddingSession)
class BiddingSessionAdmin(AuditTrailHistoryMixin, admin.ModelAdmin):
    audit_trail_model = "session"
    list_display = ("id", "product", "status", "bidder_count", "top_price", "upset_price", "inventory",
                    "start_time", "end_time", "final_price", "audit_verified", "alert")
    list_filter = ("status", "start_time", "end_time")
    search_fields = ("id", "product__name")
    list_select_related = ("product",)
    readonly_fields = ("id", "status", "end_time", "final_price", "settled_at", "settlement_alert", "log_digest",
                       "audit_verified", "audit_checked_at", "audit_detail", "result_mail_due_at", "created_by",
                       "created_at", "updated_at")
    actions = ["export_bids", "export_ranking"]
    autocomplete_fields = ("product",)
    date_hierarchy = "start_time"
    inlines = [RankingInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_bidders=Count("bids"), _top=Max("bids__price"))

    # Terms that score or rank the bids already placed, and the soft-close rule bidders have been
    # bidding under: fixed once bidding has started (the live scores would not follow them, and the
    # audit would fail the settlement). The scheduled end stays editable: moving it is what an admin
    # may need, and the engine follows it (auctions.recovery). The effective end (`end_time`) is
    # the engine's: the scheduled end, moved by soft-close extensions.
    STARTED_FIXED = ("product", "upset_price", "inventory", "alpha", "beta", "gamma", "start_time",
                     "extend_window_seconds", "extend_by_seconds", "hard_end_time")

    def get_readonly_fields(self, request, obj=None):
        """A settled session is a record: nothing of it changes any more; a started one keeps its terms."""
        if obj is not None and obj.status == SessionStatus.SETTLED:
            return [field.name for field in obj._meta.fields]
        if obj is not None and obj.start_time <= timezone.now():
            return (*self.readonly_fields, *self.STARTED_FIXED)
        return self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        """Writes only what the form changed: a save never puts back a status, price or settlement
        time the settlement wrote after the form was loaded."""
        if change:
            changed = [*form.changed_data, "updated_at"]
            if "scheduled_end_time" in form.changed_data:
                # The ends as stored now (extensions may have moved the effective end since the form loaded).
                now = BiddingSession.objects.filter(pk=obj.pk).values("scheduled_end_time", "end_time").get()
                obj.end_time = end_after_reschedule(scheduled=now["scheduled_end_time"], effective=now["end_time"],
                                                    new_scheduled=obj.scheduled_end_time)
                changed.append("end_time")
            obj.save(update_fields=changed)
        else:
            obj.created_by = request.user
            obj.save()

    @admin.display(description="alert", boolean=True)
    def alert(self, obj) -> bool:
        return bool(obj.settlement_alert)

    def _export(self, request, queryset, what: str):
        """One session's CSV (auctions.exports), streamed like the API's export."""
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one session to export.", messages.WARNING)
            return None
        session = queryset.get()
        if what == "ranking" and session.status != SessionStatus.SETTLED:
            self.message_user(request, "The ranking exists once the session is settled.", messages.WARNING)
            return None
        rows = exports.bids_csv(session.pk) if what == "bids" else exports.ranking_csv(session.pk)
        return StreamingHttpResponse(in_batches(rows), content_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="session-{session.pk}-{what}.csv"'})

    @admin.action(description="Export the bid log as CSV (one session)")
    def export_bids(self, request, queryset):
        return self._export(request, queryset, "bids")

    @admin.action(description="Export the settled ranking as CSV (one session)")
    def export_ranking(self, request, queryset):
        return self._export(request, queryset, "ranking")

    @admin.display(description="bidders", ordering="_bidders")
    def bidder_count(self, obj) -> int:
        return obj._bidders

    @admin.display(description="top price", ordering="_top")
    def top_price(self, obj):
        return obj._top



@admin.register(Bid)
class BidAdmin(ReadOnlyAdmin):
    list_display = ("session", "bidder", "price", "score", "seq", "accepted_at")
    list_filter = ("session__status",)
    search_fields = ("bidder__username", "session__id")
    list_select_related = ("session__product", "bidder")


@admin.register(BidEvent)
class BidEventAdmin(ReadOnlyAdmin):
    list_display = ("session", "seq", "bidder", "price", "score", "weight", "accepted_at", "persisted_at")
    search_fields = ("bidder__username", "session__id")
    list_select_related = ("session__product", "bidder")


@admin.register(Ranking)
class RankingAdmin(ReadOnlyAdmin):
    list_display = ("session", "rank", "bidder", "price", "score", "is_winner", "result_mailed_at")
    list_filter = ("is_winner",)
    search_fields = ("bidder__username", "session__id")
    list_select_related = ("session__product", "bidder")
