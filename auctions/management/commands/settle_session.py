from django.core.management.base import BaseCommand, CommandError

from auctions.selectors import results_get
from auctions.settlement import session_settle
from flashbid.errors import ApiError


class Command(BaseCommand):
    help = "Settle one ended session now (refuses a session that has not ended)."

    def add_arguments(self, parser):
        parser.add_argument("session_id")

    def handle(self, *args, session_id: str, **options):
        try:
            outcome = session_settle(session_id=session_id)
        except ApiError as exc:
            raise CommandError(exc.detail) from None
        except ValueError:
            raise CommandError("session_id must be a UUID") from None
        results = results_get(session_id=session_id)
        if outcome is None and results is None:
            raise CommandError("another worker is settling this session right now; try again")
        if outcome is None:
            self.stdout.write(f"already settled: final price {results['final_price']}, "
                              f"{len(results['winners'])} winner(s)")
            return
        self.stdout.write(f"settled {outcome.session_id}: {outcome.bidders} bidders, {outcome.winners} winner(s), "
                          f"final price {outcome.final_price}, {outcome.seconds:.3f} s")
