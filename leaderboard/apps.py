from django.apps import AppConfig


class LeaderboardConfig(AppConfig):
    name = "leaderboard"

    def ready(self) -> None:
        from auctions.events import session_settled
        from leaderboard.frames import announce_settled

        session_settled.connect(announce_settled, dispatch_uid="leaderboard.announce_settled")
