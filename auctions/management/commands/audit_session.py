import sys

from auctions.management.session_command import SessionCommand
from auctions.verification import session_audit_record


class Command(SessionCommand):
    help = ("Replay a settled session's bid log with the rules and compare ranking, winners and final price "
            "with what was stored. Exit 0 when they agree, 1 naming the first difference.")

    def handle(self, *args, session_id: str, **options):
        difference = self.call(session_audit_record, session_id)
        if difference:
            self.stderr.write(f"audit of {session_id} FAILED: {difference}")
            sys.exit(1)
        self.stdout.write(f"audit of {session_id}: the stored ranking, winners and final price agree with the log")
