"""The shape shared by the commands about one session (settle_session, rebuild_leaderboard)."""

from django.core.management.base import BaseCommand, CommandError

from core.exceptions import ApplicationError


class SessionCommand(BaseCommand):
    """Takes `<session_id>`; `call` runs a service on it, its ApplicationError and a malformed id becoming
    a CommandError with the service's own message."""

    def add_arguments(self, parser):
        parser.add_argument("session_id")

    def call(self, service, session_id: str):
        try:
            return service(session_id=session_id)
        except ApplicationError as exc:
            raise CommandError(exc.detail) from None
        except ValueError:
            raise CommandError("session_id must be a UUID") from None
