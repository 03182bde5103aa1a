"""Demo data: an admin, bidders, products and one session in each state. Safe to rerun."""

import datetime as dt
import os
import secrets
from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from auctions.models import BiddingSession, Product

DEMO_PASSWORD = "flashbid-demo"
PRODUCTS = [
    ("Aurora headphones", "Noise-cancelling over-ear headphones, limited run."),
    ("Nimbus e-bike", "Folding electric bike, 80 km range."),
    ("Vintage film camera", "Restored 35 mm rangefinder."),
]


class Command(BaseCommand):
    help = "Create demo users, products and sessions (scheduled, active for 30 minutes, ended)."

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
                    )
                    self.stdout.write(f"session {label}: {session.id} (new)")
                else:
                    self.stdout.write(f"session {label}: {session.id} (exists)")

    @staticmethod
    def _current(label: str, product: Product, now) -> BiddingSession | None:
        sessions = BiddingSession.objects.filter(product=product, created_by__username="admin")
        if label == "active":
            return sessions.filter(start_time__lte=now, end_time__gt=now).exclude(status="settled").first()
        if label == "scheduled":
            return sessions.filter(start_time__gt=now).first()
        return sessions.filter(end_time__lte=now).first()
