from django.contrib import admin
from django.db.models import Count, Max

from auctions.models import Bid, BiddingSession, BidEvent, Product, Ranking


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
    fields = ("rank", "bidder", "price", "score", "is_winner")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("rank",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("bidder")


@admin.register(BiddingSession)
class BiddingSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "status", "bidder_count", "top_price", "upset_price", "inventory",
                    "start_time", "end_time", "final_price")
    list_filter = ("status", "start_time", "end_time")
    search_fields = ("id", "product__name")
    list_select_related = ("product",)
    readonly_fields = ("id", "status", "final_price", "settled_at", "created_by", "created_at", "updated_at")
    autocomplete_fields = ("product",)
    date_hierarchy = "start_time"
    inlines = [RankingInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_bidders=Count("bids"), _top=Max("bids__price"))

    @admin.display(description="bidders", ordering="_bidders")
    def bidder_count(self, obj) -> int:
        return obj._bidders

    @admin.display(description="top price", ordering="_top")
    def top_price(self, obj):
        return obj._top

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


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
    list_display = ("session", "rank", "bidder", "price", "score", "is_winner")
    list_filter = ("is_winner",)
    search_fields = ("bidder__username", "session__id")
    list_select_related = ("session__product", "bidder")
