from django.core.management.base import BaseCommand, CommandError

from auctions.services import leaderboard_rebuild
from flashbid.errors import ApiError


class Command(BaseCommand):
    help = "Rebuild a session's live Redis state (ranking, bids, parameters) from PostgreSQL."

    def add_arguments(self, parser):
        parser.add_argument("session_id")

    def handle(self, *args, session_id: str, **options):
        try:
            restored = leaderboard_rebuild(session_id=session_id)
        except ApiError as exc:
            raise CommandError(exc.detail) from None
        except ValueError:
            raise CommandError("session_id must be a UUID") from None
        self.stdout.write(f"rebuilt {session_id}: {restored} bidder(s) restored from PostgreSQL")
