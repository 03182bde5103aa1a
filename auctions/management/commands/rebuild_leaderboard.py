from auctions.management.session_command import SessionCommand
from auctions.services import leaderboard_rebuild


class Command(SessionCommand):
    help = "Rebuild a session's live Redis state (ranking, bids, parameters) from PostgreSQL."

    def handle(self, *args, session_id: str, **options):
        restored = self.call(leaderboard_rebuild, session_id)
        self.stdout.write(f"rebuilt {session_id}: {restored} bidder(s) restored from PostgreSQL")
