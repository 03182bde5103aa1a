import asyncio

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from auctions.models import BiddingSession
from bench import simulation


class Command(BaseCommand):
    help = ("Real bidding bots against a running server over HTTP (optionally with WebSocket listeners); "
            "prints accepted, rejected by code, p50/p99. Bounded by --duration; loopback unless --allow-remote.")

    def add_arguments(self, parser):
        parser.add_argument("--session", help="session id (default: the active session that ends last)")
        parser.add_argument("--bidders", type=int, default=50, help="bots (users sim-0001…, created when missing)")
        parser.add_argument("--duration", type=float, default=30.0, help="seconds of bidding")
        parser.add_argument("--rate", type=float, default=20.0,
                            help="bids per second offered in total (open loop); 0 = as fast as possible")
        parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections")
        parser.add_argument("--listeners", type=int, default=0, help="WebSocket listeners on the session")
        parser.add_argument("--snipers", type=int, default=0,
                            help="bots that bid the price to win in the session's last seconds (soft close: "
                                 "each such bid moves the end)")
        parser.add_argument("--snipe-seconds", type=float, default=3.0, help="how close to the end snipers bid")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
        parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")

    def handle(self, *args, **o):
        if not simulation.is_loopback(o["url"]) and not o["allow_remote"]:
            raise CommandError(f"{o['url']} is not loopback; pass --allow-remote to load another host")
        if not 0 < o["duration"] <= simulation.MAX_DURATION_SECONDS:
            raise CommandError(f"--duration must be within (0, {simulation.MAX_DURATION_SECONDS}] seconds")
        if o["bidders"] < 1 or o["concurrency"] < 1 or o["rate"] < 0 or o["listeners"] < 0 or o["snipers"] < 0:
            raise CommandError("--bidders and --concurrency must be positive; --rate, --listeners and --snipers "
                               "not negative")
        if o["snipe_seconds"] <= 0:
            raise CommandError("--snipe-seconds must be positive")
        session_id = o["session"] or self._active_session()
        bots = simulation.bots_prepare(o["bidders"])
        snipers = simulation.bots_prepare(o["snipers"], prefix="snipe") if o["snipers"] else []
        pace = f"{o['rate']:g} bids/s" if o["rate"] else "closed loop"
        self.stdout.write(f"simulating {len(bots)} bidders on session {session_id} for {o['duration']:g} s "
                          f"({pace}) against {o['url']}")
        try:
            report = asyncio.run(simulation.simulate(
                url=o["url"], session_id=session_id, bots=bots, duration=o["duration"], rate=o["rate"] or None,
                concurrency=o["concurrency"], listeners=o["listeners"], snipers=snipers,
                snipe_seconds=o["snipe_seconds"]))
        except OSError as exc:
            raise CommandError(f"cannot reach {o['url']}: {exc}") from None
        except simulation.httpx.HTTPStatusError as exc:
            raise CommandError(f"session {session_id}: {exc.response.status_code} {exc.response.text}") from None
        self.stdout.write(report.summary())

    def _active_session(self) -> str:
        now = timezone.now()
        session = (BiddingSession.objects.filter(start_time__lte=now, end_time__gt=now)
                   .order_by("-end_time").first())
        if session is None:
            raise CommandError("no active session; pass --session or create one (manage.py create_session)")
        return str(session.pk)
