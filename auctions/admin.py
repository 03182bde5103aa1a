"""The Django admin of the auction: products, sessions (their terms checked and locked as the API
checks them, the status by the clock, settle-now and the exports), and the engine's records,
read-only."""

import logging

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Max
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst

from auctions import exports, services, settlement
from auctions.models import Bid, BiddingSession, BidEvent, Product, Ranking, SessionStatus, status_q
from auctions.rules import end_after_reschedule
from core.exceptions import ApplicationError, ErrorCode
from core.streaming import in_batches
from history.admin import AuditTrailHistoryMixin

logger = logging.getLogger(__name__)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Bids, events and rankings are written by the engine and the settlement only."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ProductForm(forms.ModelForm):
    """The product with its picture: an upload is checked and re-encoded by the same service the
    demo data uses (auctions.services.picture_encode), its refusal shown in words."""

    picture_upload = forms.FileField(required=False, label="Picture",
                                     help_text="PNG, JPEG, GIF or WebP, at most 5 MB; stored scaled to 1200 px.")
    picture_remove = forms.BooleanField(required=False, label="Remove the picture")

    class Meta:
        model = Product
        fields = ("name", "description")

    def clean_picture_upload(self):
        upload = self.cleaned_data.get("picture_upload")
        if not upload:
            return None
        try:
            return services.picture_encode(upload)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail.removeprefix("picture: "), code=str(exc.code)) from None


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("name", "has_picture", "created_at")
    search_fields = ("name", "description")
    readonly_fields = ("picture_preview",)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("picture_upload"):
            services.product_picture_set(product=obj, picture=form.cleaned_data["picture_upload"])
        elif form.cleaned_data.get("picture_remove"):
            services.product_picture_set(product=obj, picture=None)

    @admin.display(description="picture", boolean=True)
    def has_picture(self, obj) -> bool:
        return obj.picture_updated_at is not None

    @admin.display(description="current picture")
    def picture_preview(self, obj):
        if not obj.pk or obj.picture_updated_at is None:
            return "none"
        return format_html('<img src="{}?v={}" alt="" width="240">',
                           reverse("product-picture", args=[obj.pk]), int(obj.picture_updated_at.timestamp()))


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


class SessionStateFilter(admin.SimpleListFilter):
    """The status by the clock (models.status_q: rules.session_status in SQL), not the stored
    column, which the settlement tick refreshes only every few seconds."""

    title = "status"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return SessionStatus.choices

    def queryset(self, request, queryset):
        if self.value() in SessionStatus.values:
            return queryset.filter(status_q(self.value(), timezone.now()))
        return queryset


class BiddingSessionForm(forms.ModelForm):
    """The admin's session form checks the terms as the API does (services.session_validate: the
    rule in words, never a constraint's name) and what may change at the session's state
    (services.session_edit_check)."""

    # The state the change page was loaded in (a hidden input of change_form.html): a form loaded
    # before the start or the end and sent after it is refused rather than saved in part (the
    # fields fixed meanwhile are no longer in the form, so their edits would be dropped silently).
    LOADED_STATE = "loaded_state"

    class Meta:
        model = BiddingSession
        fields = services.SESSION_TERMS

    def clean(self):
        data = super().clean()
        session, now = self.instance, timezone.now()
        adding = session._state.adding
        try:
            if not adding:
                self._refuse_if_the_state_moved_on(session.current_status(now))
            self._validate_terms(data)
            if not adding:
                changed = set(self.changed_data)
                services.session_edit_check(session=session, changed=changed, now=now,
                                            scheduled_end_time=data.get("scheduled_end_time",
                                                                        session.scheduled_end_time))
        except services.SessionTermsInvalid as exc:
            for name, words in exc.problems:
                self.add_error(self._field_of(name), f"{_label(name)} {words}.")
        except ApplicationError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.detail)
        return data

    def _refuse_if_the_state_moved_on(self, state: str) -> None:
        loaded = self.data.get(self.LOADED_STATE)
        order = list(SessionStatus.values)
        if loaded in order and order.index(state) > order.index(loaded):
            raise ApplicationError(ErrorCode.INVALID, f"This session is {state} now (it was {loaded} when this "
                                                      "page was loaded): nothing was saved. Check the page as "
                                                      "it stands and save again if that is still allowed.")

    def _validate_terms(self, data: dict) -> None:
        """services.session_validate over the terms as they would be saved (a field left out of
        the form keeps the session's value). Skipped while a field has an error of its own."""
        names = ("upset_price", "inventory", "alpha", "beta", "gamma", "start_time", "scheduled_end_time",
                 "extend_window_seconds", "extend_by_seconds", "hard_end_time")
        values = {}
        for name in names:
            if name in self.fields:
                if name not in data:
                    return
                values[name] = data[name]
            else:
                values[name] = getattr(self.instance, name)
        if any(values[name] is None for name in names if name != "hard_end_time"):
            return
        values["end_time"] = values.pop("scheduled_end_time")
        services.session_validate(**values)

    def _field_of(self, name: str) -> str | None:
        """The form field a problem of the service's is shown next to (its end_time is our scheduled end)."""
        name = "scheduled_end_time" if name == "end_time" else name
        if name in self.fields:
            return name
        return "scheduled_end_time" if "scheduled_end_time" in self.fields else None


def _label(name: str) -> str:
    """A term's name as the form labels it, for a message next to the field."""
    name = "scheduled_end_time" if name == "end_time" else name
    return capfirst(BiddingSession._meta.get_field(name).verbose_name)


# What the change page says about the terms in each state (change_form.html).
TERMS_NOTICES = {
    SessionStatus.ACTIVE: "Bidding has started: the scoring terms are fixed (the bids already placed were scored "
                          "and ranked under them). You may move the scheduled end later, not earlier, until "
                          "the session ends.",
    SessionStatus.ENDED: "Ended: bidding is over and the settlement is due (within seconds, or use the action "
                         "“Settle now” on the list); the session can no longer change.",
    SessionStatus.SETTLED: "Settled: this session is a record; nothing of it changes any more.",
}


@admin.register(BiddingSession)
class BiddingSessionAdmin(AuditTrailHistoryMixin, admin.ModelAdmin):
    audit_trail_model = "session"
    form = BiddingSessionForm
    change_form_template = "admin/auctions/biddingsession/change_form.html"
    # Short columns, so that the end and the final price fit a 1280 px screen without scrolling.
    list_display = ("product", "state", "start", "end", "inventory_k", "bidder_count", "top_price", "final_price",
                    "checks")
    list_filter = (SessionStateFilter, "start_time", "end_time")
    search_fields = ("id", "product__name")
    list_select_related = ("product",)
    readonly_fields = ("id", "state", "end_time", "final_price", "settled_at", "settlement_alert", "log_digest",
                       "audit_verified", "audit_checked_at", "audit_detail", "result_mail_due_at", "created_by",
                       "created_at", "updated_at")
    fieldsets = (
        ("Terms", {"fields": ("product", "upset_price", "inventory", "alpha", "beta", "gamma")}),
        ("Times", {"fields": ("state", "start_time", "scheduled_end_time", "end_time"),
                   "description": "The end time is the effective end: the scheduled end, moved later by "
                                  "soft-close extensions."}),
        ("Soft close", {"fields": ("extend_window_seconds", "extend_by_seconds", "hard_end_time"),
                        "description": "An accepted bid ranking within the top K less than the window before the "
                                       "end moves the end to its time plus the extension, never past the hard "
                                       "end. A window of 0 turns it off."}),
        ("Outcome", {"fields": ("final_price", "settled_at", "settlement_alert", "log_digest", "audit_verified",
                                "audit_checked_at", "audit_detail", "result_mail_due_at")}),
        ("Record", {"fields": ("id", "created_by", "created_at", "updated_at")}),
    )
    actions = ["settle_now", "export_bids", "export_ranking"]
    autocomplete_fields = ("product",)
    date_hierarchy = "start_time"
    inlines = [RankingInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_bidders=Count("bids"), _top=Max("bids__price"))

    # Terms that score or rank the bids already placed, and the soft-close rule bidders have been
    # bidding under: fixed once bidding has started (the live scores would not follow them, and the
    # audit would fail the settlement). The scheduled end stays editable until the session ends:
    # moving it later is what an admin may need, and the engine follows it (auctions.recovery). The
    # effective end (`end_time`) is the engine's: the scheduled end, moved by soft-close extensions.
    STARTED_FIXED = ("product", "upset_price", "inventory", "alpha", "beta", "gamma", "start_time",
                     "extend_window_seconds", "extend_by_seconds", "hard_end_time")

    def get_readonly_fields(self, request, obj=None):
        """An ended or settled session does not change any more; a started one keeps its terms
        (services.session_edit_check says the same in words)."""
        if obj is None:
            return self.readonly_fields
        state = obj.current_status(timezone.now())
        if state in (SessionStatus.ENDED, SessionStatus.SETTLED):
            return (*self.readonly_fields, *self.STARTED_FIXED, "scheduled_end_time")
        if state == SessionStatus.ACTIVE:
            return (*self.readonly_fields, *self.STARTED_FIXED)
        return self.readonly_fields

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            state = obj.current_status(timezone.now())
            context.update(loaded_state=state, terms_notice=TERMS_NOTICES.get(state))
            if state in (SessionStatus.ENDED, SessionStatus.SETTLED):  # nothing to save
                context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

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

    @admin.display(description="status")
    def state(self, obj) -> str:
        """By the clock, as the API tells it (rules.session_status), not the stored column."""
        if obj.start_time is None or obj.end_time is None:  # the add page
            return "–"
        return SessionStatus(obj.current_status(timezone.now())).label

    @admin.display(description="start", ordering="start_time")
    def start(self, obj) -> str:
        return _short_time(obj.start_time)

    @admin.display(description="end", ordering="end_time")
    def end(self, obj) -> str:
        """The effective end; marked when soft-close extensions moved it past the scheduled end."""
        if obj.end_time > obj.scheduled_end_time:
            return format_html('{}<span title="extended by soft close from {}"> +</span>', _short_time(obj.end_time),
                               timezone.localtime(obj.scheduled_end_time).strftime("%Y-%m-%d %H:%M:%S"))
        return _short_time(obj.end_time)

    @admin.display(description="K", ordering="inventory")
    def inventory_k(self, obj) -> int:
        return obj.inventory

    @admin.display(description="checks")
    def checks(self, obj) -> str:
        """The settlement's alert and the independent audit, in one column."""
        if obj.settlement_alert:
            return "⚠ alert"
        if obj.audit_verified is None:
            return "–"
        return "✔ audited" if obj.audit_verified else "✘ audit failed"

    @admin.action(description="Settle now (ended sessions)")
    def settle_now(self, request, queryset):
        """The real settlement (auctions.settlement.session_settle) of each selected session,
        reported one by one: settled, not ended, already settled, busy or failed; never a 500."""
        for session in queryset.select_related("product"):
            name = f"{session.product.name} ({session.pk})"
            try:
                outcome = settlement.session_settle(session_id=str(session.pk))
            except ApplicationError as exc:
                level = messages.WARNING if exc.code == ErrorCode.SESSION_NOT_ENDED else messages.ERROR
                label = "not ended" if exc.code == ErrorCode.SESSION_NOT_ENDED else "failed"
                self.message_user(request, f"{name}: {label}: {exc.detail}", level)
                continue
            except Exception:  # the next beat tick retries; the admin hears of it, not a 500
                logger.exception("admin settle-now of session %s failed", session.pk)
                self.message_user(request, f"{name}: failed (see the logs); the next settlement tick retries it.",
                                  messages.ERROR)
                continue
            if outcome is None:
                settled = BiddingSession.objects.filter(pk=session.pk, status=SessionStatus.SETTLED).exists()
                self.message_user(request, f"{name}: " + ("already settled." if settled else
                                                          "being settled by a worker right now."), messages.INFO)
            else:
                price = outcome.final_price if outcome.final_price is not None else "none (no bids)"
                self.message_user(request, f"{name}: settled: {outcome.bidders} bidder(s), {outcome.winners} "
                                           f"winner(s), final price {price}.", messages.SUCCESS)

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


def _short_time(moment) -> str:
    """To the minute (the change page has the seconds), on one line."""
    return format_html('<span class="nowrap">{}</span>', timezone.localtime(moment).strftime("%Y-%m-%d %H:%M"))


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
