from django.core.management.base import CommandError

from auctions.management.session_command import SessionCommand
from auctions.selectors import results_get
from auctions.settlement import session_settle


class Command(SessionCommand):
    help = "Settle one ended session now (refuses a session that has not ended)."

    def handle(self, *args, session_id: str, **options):
        outcome = self.call(session_settle, session_id)
        results = results_get(session_id=session_id)
        if outcome is None and results is None:
            raise CommandError("another worker is settling this session right now; try again")
        if outcome is None:
            self.stdout.write(f"already settled: final price {results['final_price']}, "
                              f"{len(results['winners'])} winner(s)")
            return
        self.stdout.write(f"settled {outcome.session_id}: {outcome.bidders} bidders, {outcome.winners} winner(s), "
                          f"final price {outcome.final_price}, {outcome.seconds:.3f} s")
