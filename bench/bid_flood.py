"""Flood the bid endpoint of a running FlashBid server and print requests/s, p50, p99 and the
status codes. Creates its own session; the bidders are bots (bench.simulation: bulk insert,
tokens minted directly, no password hashing through HTTP). Loopback only; bounded by --duration.

    .venv/bin/python bench/bid_flood.py --url http://127.0.0.1:8000 --bidders 1000 --duration 10

Uses the same DATABASE_URL / REDIS_URL / SECRET_KEY environment as the server it targets (against
`make up`: DEBUG=true, and the checkout's generated key is read from var/secret_key).
"""

import argparse
import asyncio
import os
import sys
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from bench import simulation  # noqa: E402


def session_create() -> str:
    """A new open session, its live state in Redis made whole as its first bid would make it: else
    the first requests measured would wait for that restore from PostgreSQL (hundreds of ms, which
    the open-loop p99 of a 10 s run then shows)."""
    from auctions.recovery import live_state_ensure

    out = StringIO()
    call_command("create_session", "--product", "Benchmark", "--upset-price", "1.00", "--inventory", "10",
                 "--beta", "10", "--gamma", "1", "--duration", "3600", stdout=out)
    session_id = out.getvalue().strip()
    live_state_ensure(session_id=session_id)
    return session_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--bidders", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if not simulation.is_loopback(args.url):
        parser.error("loads target loopback only")
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be within 1..120 s")
    session_id = session_create()
    bots = simulation.bots_prepare(args.bidders, prefix="bench")
    report = asyncio.run(simulation.simulate(url=args.url, session_id=session_id, bots=bots,
                                             duration=args.duration, concurrency=args.concurrency))
    print(f"bid flood: {args.bidders} bidders, concurrency {args.concurrency}, session {session_id}")
    print(report.summary())


if __name__ == "__main__":
    main()
