from auctions.management.session_command import SessionCommand
from auctions.recovery import live_state_restore


class Command(SessionCommand):
    help = "Rebuild a session's live Redis state (ranking, bids, parameters) from PostgreSQL."

    def handle(self, *args, session_id: str, **options):
        restored = self.call(live_state_restore, session_id)
        self.stdout.write(f"rebuilt {session_id}: {restored} bidder(s) restored from PostgreSQL")
