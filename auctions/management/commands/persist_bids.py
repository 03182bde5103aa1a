from django.core.management.base import BaseCommand

from auctions.persistence import bids_persist_all


class Command(BaseCommand):
    help = "Flush every open session's bid stream into PostgreSQL now; print what was written."

    def handle(self, *args, **options):
        written = bids_persist_all()
        self.stdout.write(f"persisted {written['events']} bid events, {written['bids']} current bids")
        for session_id, events in written["sessions"].items():
            self.stdout.write(f"  {session_id}: {events} events")
