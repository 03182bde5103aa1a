from django.core.management.base import BaseCommand

from auctions.recovery import persist_tick


class Command(BaseCommand):
    help = ("Flush every open session's bid stream into PostgreSQL now, repair any live state Redis lost; "
            "print what was written.")

    def handle(self, *args, **options):
        written = persist_tick()
        self.stdout.write(f"persisted {written['events']} bid events, {written['bids']} current bids")
        for session_id, events in written["sessions"].items():
            self.stdout.write(f"  {session_id}: {events} events")
        for session_id in written["restored"]:
            self.stdout.write(f"  {session_id}: live state restored from PostgreSQL")
