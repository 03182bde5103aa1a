"""Profile the bid request inside one process, without network or client: the ASGI application is
driven directly with pre-built scopes, so every sample is server-side work (Django, ninja, auth,
the Redis round trip). Prints µs per bid and the top functions by cumulative time.

    .venv/bin/python bench/profile_bid.py --bids 3000 [--pyinstrument] [--losing]
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")
# The production configuration, as served. The key signs only this process's own tokens.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")

import django  # noqa: E402

django.setup()

from auctions.rules import cents_to_price  # noqa: E402
from bench import simulation  # noqa: E402
from bench.bid_flood import session_create  # noqa: E402
from flashbid.asgi import application  # noqa: E402


async def bid(session_id: str, token: str, cents: int) -> int:
    body = f'{{"price": "{cents_to_price(cents)}"}}'.encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"/api/sessions/{session_id}/bids", "raw_path": b"", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {token}".encode()),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    sent = {"done": False}
    status = 0

    async def receive():
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await application(scope, receive, send)
    return status


async def run(session_id: str, bots, count: int, losing: bool = False) -> list[int]:
    """Rising prices: every bid ranks first; with `losing`, falling prices: past the first K, every
    bid ranks below K (the answer then carries a price to win, computed per bid)."""
    return [await bid(session_id, bots[n % len(bots)].token, 10_000_000 - n if losing else 100_000 + n)
            for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bids", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=1, help="unprofiled runs after the profiled one")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="the unprofiled runs only")
    parser.add_argument("--losing", action="store_true", help="bids that rank below K (with a price to win)")
    parser.add_argument("--no-token-cache", action="store_true", help="verify every JWT again (the 'before')")
    args = parser.parse_args()
    if args.no_token_cache:
        from accounts import selectors, tokens

        selectors.token_verify = tokens._verify
    # Losing bids need a bidder each (a second, lower bid of the same bidder is refused as not_higher).
    bots = simulation.bots_prepare(max(1000, args.bids + 250) if args.losing else 1000, prefix="bench")
    session_id = session_create()
    asyncio.run(run(session_id, bots, 200))  # warm
    session_id = session_create()
    asyncio.run(run(session_id, bots, 50))
    began = time.perf_counter()
    if args.no_profile:  # sampled from outside instead (py-spy), or only timed
        statuses = []
    elif args.pyinstrument:
        from pyinstrument import Profiler

        with Profiler() as profiler:
            statuses = asyncio.run(run(session_id, bots, args.bids, args.losing))
        profiler.print(show_all=False)
    else:
        profile = cProfile.Profile()
        profile.enable()
        statuses = asyncio.run(run(session_id, bots, args.bids, args.losing))
        profile.disable()
        pstats.Stats(profile).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(35)
    elapsed = time.perf_counter() - began
    if statuses:
        print(f"{args.bids} bids, statuses {set(statuses)}: {elapsed / args.bids * 1e6:.0f} µs per bid (profiled)")
    for _ in range(args.repeat):
        session_id = session_create()
        began, cpu_began = time.perf_counter(), time.process_time()
        asyncio.run(run(session_id, bots, args.bids, args.losing))
        print(f"unprofiled: {(time.perf_counter() - began) / args.bids * 1e6:.0f} µs per bid, of which "
              f"{(time.process_time() - cpu_began) / args.bids * 1e6:.0f} µs of this process's CPU "
              "(the rest: Redis's answer), in one process, no network")


if __name__ == "__main__":
    main()
