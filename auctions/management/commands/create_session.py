import datetime as dt
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from auctions.models import Product
from auctions.services import session_create
from core.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Create a bidding session (and its product if needed); prints its id."

    def add_arguments(self, parser):
        parser.add_argument("--product", default="Demo product", help="product name (created if missing)")
        parser.add_argument("--upset-price", default="10.00")
        parser.add_argument("--inventory", type=int, default=3)
        parser.add_argument("--alpha", type=float, default=1.0)
        parser.add_argument("--beta", type=float, default=0.0)
        parser.add_argument("--gamma", type=float, default=0.0)
        parser.add_argument("--starts-in", type=float, default=0.0, help="seconds from now")
        parser.add_argument("--duration", type=float, default=1800.0, help="seconds")

    def handle(self, *args, **o):
        product, _ = Product.objects.get_or_create(name=o["product"])
        start = timezone.now() + dt.timedelta(seconds=o["starts_in"])
        try:
            session = session_create(product_id=product.pk, upset_price=Decimal(o["upset_price"]),
                                     inventory=o["inventory"], alpha=o["alpha"], beta=o["beta"], gamma=o["gamma"],
                                     start_time=start, end_time=start + dt.timedelta(seconds=o["duration"]))
        except ApplicationError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(str(session.pk))
