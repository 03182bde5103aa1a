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
        parser.add_argument("--extend-window", type=int, default=0,
                            help="soft close: a top-K bid this many seconds before the end extends it (0: off)")
        parser.add_argument("--extend-by", type=int, default=0, help="soft close: seconds past such a bid")
        parser.add_argument("--hard-end-after", type=float, default=None,
                            help="soft close: no extension past this many seconds after the scheduled end")

    def handle(self, *args, **o):
        product, _ = Product.objects.get_or_create(name=o["product"])
        start = timezone.now() + dt.timedelta(seconds=o["starts_in"])
        end = start + dt.timedelta(seconds=o["duration"])
        hard_end = end + dt.timedelta(seconds=o["hard_end_after"]) if o["hard_end_after"] is not None else None
        try:
            session = session_create(product_id=product.pk, upset_price=Decimal(o["upset_price"]),
                                     inventory=o["inventory"], alpha=o["alpha"], beta=o["beta"], gamma=o["gamma"],
                                     start_time=start, end_time=end, extend_window_seconds=o["extend_window"],
                                     extend_by_seconds=o["extend_by"], hard_end_time=hard_end)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(str(session.pk))
