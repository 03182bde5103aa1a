"""Demo data: an admin, bidders, products and one session in each state, the settled one with bids
and winners (placed through the real bid engine, settled by the real settlement). Safe to rerun."""

import datetime as dt
import io
import os
import secrets
from decimal import Decimal

from asgiref.sync import async_to_sync
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.user_cache import get_current_user
from auctions import live, settlement
from auctions.models import BiddingSession, Product, SessionStatus
from auctions.rules import us_to_datetime
from auctions.services import bid_place, picture_encode, product_picture_set

DEMO_PASSWORD = "flashbid-demo"
PRODUCTS = [
    ("Aurora headphones", "Noise-cancelling over-ear headphones, limited run."),
    ("Nimbus e-bike", "Folding electric bike, 80 km range."),
    ("Vintage film camera", "Restored 35 mm rangefinder."),
    ("Espresso machine", "Dual-boiler espresso machine, ex-demo."),
]
# The settled session's bids: (bidder number, price), some bidders raising their own bid.
SETTLED_BIDS = [(1, "24.00"), (2, "31.50"), (3, "18.00"), (4, "42.00"), (5, "27.75"), (6, "35.00"),
                (7, "22.40"), (8, "39.90"), (3, "33.00"), (1, "44.00"), (9, "29.00"), (10, "37.25")]


# The demo products' pictures: drawn here (a colour and the name), stored like an admin's upload.
PICTURE_COLOURS = [(59, 91, 219), (31, 122, 61), (154, 103, 0), (180, 35, 24)]


def _demo_picture(name: str, colour: tuple[int, int, int]) -> io.BytesIO:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), colour)
    draw = ImageDraw.Draw(image)
    for i in range(0, 640, 40):  # a few stripes, so it reads as a picture, not a flat box
        draw.line([(i, 480), (i + 240, 0)], fill=tuple(min(255, c + 24) for c in colour), width=14)
    draw.text((32, 400), name, fill=(255, 255, 255), font_size=44)
    out = io.BytesIO()
    image.save(out, format="PNG")
    out.seek(0)
    return out


class Command(BaseCommand):
    help = ("Create demo users, products and sessions (scheduled, active for 30 minutes, ended, settled with "
            "bids and winners).")

    def add_arguments(self, parser):
        parser.add_argument("--bidders", type=int, default=50)
        parser.add_argument("--active-minutes", type=int, default=30)

    def handle(self, *args, bidders: int, active_minutes: int, **options):
        admin_password = os.environ.get("FLASHBID_ADMIN_PASSWORD")
        with transaction.atomic():
            admin = User.objects.filter(username="admin").first()
            if admin is None:
                generated = admin_password is None
                admin_password = admin_password or secrets.token_urlsafe(12)
                admin = User.objects.create_superuser("admin", "admin@flashbid.local", admin_password)
                self.stdout.write(f"admin: username 'admin', password '{admin_password}'"
                                  + (" (generated; shown once)" if generated else " (from FLASHBID_ADMIN_PASSWORD)"))
            elif admin_password:
                admin.set_password(admin_password)
                admin.save()
                self.stdout.write("admin: password reset from FLASHBID_ADMIN_PASSWORD")
            else:
                self.stdout.write("admin: exists (password unchanged)")

            existing = set(User.objects.filter(username__startswith="bidder").values_list("username", flat=True))
            hashed = make_password(DEMO_PASSWORD)  # one hash for all demo bidders: seeding stays fast
            new_users = [
                User(username=f"bidder{i:03d}", email=f"bidder{i:03d}@flashbid.local", password=hashed,
                     weight=round(0.5 + (i % 10) / 10, 2))
                for i in range(1, bidders + 1) if f"bidder{i:03d}" not in existing
            ]
            User.objects.bulk_create(new_users)
            self.stdout.write(f"bidders: {bidders} (bidder001..bidder{bidders:03d}), password '{DEMO_PASSWORD}'"
                              f" ({len(new_users)} new)")

            products = [Product.objects.get_or_create(name=name, defaults={"description": text})[0]
                        for name, text in PRODUCTS]
            for product, colour in zip(products, PICTURE_COLOURS, strict=False):
                if product.picture_updated_at is None:
                    product_picture_set(product=product, picture=picture_encode(_demo_picture(product.name, colour)))
            now = timezone.now().replace(microsecond=0)
            wanted = {
                "active": (products[0], now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=active_minutes)),
                "scheduled": (products[1], now + dt.timedelta(hours=1), now + dt.timedelta(hours=2)),
                "ended": (products[2], now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)),
            }
            for label, (product, start, end) in wanted.items():
                session = self._current(label, product, now)
                if session is None:
                    session = BiddingSession.objects.create(
                        product=product, upset_price=Decimal("10.00"), inventory=3, alpha=1.0, beta=100.0,
                        gamma=5.0, start_time=start, end_time=end, created_by=admin,
                        # Soft close: a top-3 bid in the last 30 s moves the end to 15 s after it.
                        extend_window_seconds=30, extend_by_seconds=15,
                    )
                    self.stdout.write(f"session {label}: {session.id} (new)")
                else:
                    self.stdout.write(f"session {label}: {session.id} (exists)")
        self._settled_session(products[3], admin, bidders)

    def _settled_session(self, product: Product, admin: User, bidders: int) -> None:
        """A session that took real bids (the bid engine, one Lua script each, as the API places
        them), was ended (its end moved to now, as an admin may) and was settled by the settlement
        itself: the ranking, winners, final price, bid log and digest are the real ones."""
        done = BiddingSession.objects.filter(product=product, created_by=admin, status=SessionStatus.SETTLED).first()
        if done is not None:
            self.stdout.write(f"session settled: {done.id} (exists)")
            return
        now = timezone.now().replace(microsecond=0)
        session = BiddingSession.objects.create(
            product=product, upset_price=Decimal("15.00"), inventory=3, alpha=1.0, beta=100.0, gamma=5.0,
            start_time=now - dt.timedelta(hours=3), end_time=now + dt.timedelta(hours=1), created_by=admin)
        plan = [(f"bidder{n:03d}", Decimal(price)) for n, price in SETTLED_BIDS if n <= bidders]
        users = {u.username: str(u.pk) for u in User.objects.filter(username__in={name for name, _ in plan})}

        async def place_all() -> None:
            for name, price in plan:
                await bid_place(session_id=str(session.pk), user=await get_current_user(users[name]), price=price)

        async_to_sync(place_all)()
        ended = us_to_datetime(live.redis_clock_us())  # after the last accepted bid, by the engine's clock
        BiddingSession.objects.filter(pk=session.pk).update(end_time=ended, scheduled_end_time=ended)
        session.refresh_from_db()
        live.params_store(session)
        outcome = settlement.session_settle(session_id=str(session.pk))
        self.stdout.write(f"session settled: {session.id} (new: {len(plan)} bids, {outcome.bidders} bidders, "
                          f"{outcome.winners} winners, final price {outcome.final_price})")

    @staticmethod
    def _current(label: str, product: Product, now) -> BiddingSession | None:
        sessions = BiddingSession.objects.filter(product=product, created_by__username="admin")
        if label == "active":
            return sessions.filter(start_time__lte=now, end_time__gt=now).exclude(status="settled").first()
        if label == "scheduled":
            return sessions.filter(start_time__gt=now).first()
        return sessions.filter(end_time__lte=now).first()
