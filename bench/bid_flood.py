"""Flood the bid endpoint of a running FlashBid server and print requests/s, p50, p99 and the
status codes. Creates its own session and bidders (bulk insert, tokens minted directly: no
password hashing through HTTP). Loopback only; bounded by --duration.

    .venv/bin/python bench/bid_flood.py --url http://127.0.0.1:8000 --bidders 1000 --duration 10

Uses the same DATABASE_URL / REDIS_URL / SECRET_KEY environment as the server it targets.
"""

import argparse
import asyncio
import collections
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

import httpx  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.tokens import token_issue  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def setup(bidders: int) -> tuple[str, list[str]]:
    from io import StringIO

    out = StringIO()
    call_command("create_session", "--product", "Benchmark", "--upset-price", "1.00", "--inventory", "10",
                 "--beta", "10", "--gamma", "1", "--duration", "3600", stdout=out)
    session_id = out.getvalue().strip()
    tag = uuid.uuid4().hex[:8]
    unusable = make_password(None)
    users = [User(username=f"bench-{tag}-{i}", email=f"bench-{tag}-{i}@bench.local", password=unusable,
                  weight=1 + (i % 5) / 10) for i in range(bidders)]
    User.objects.bulk_create(users, batch_size=2000)
    tokens = [token_issue(user_id=str(u.pk), token_version=0)[0] for u in users]
    return session_id, tokens


async def flood(url: str, session_id: str, tokens: list[str], duration: float, concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    next_bidder = 0
    price_cents = [100] * len(tokens)
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker():
            nonlocal next_bidder
            while time.perf_counter() < deadline:
                i = next_bidder = (next_bidder + 1) % len(tokens)
                price_cents[i] += 1 + (i % 7)
                body = f'{{"price": "{price_cents[i] // 100}.{price_cents[i] % 100:02d}"}}'
                started = time.perf_counter()
                response = await client.post(f"/api/sessions/{session_id}/bids", content=body,
                                             headers={"Authorization": f"Bearer {tokens[i]}",
                                                      "Content-Type": "application/json"})
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "accepted_rps": statuses[201] / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
            "statuses": dict(statuses), "non_2xx": sum(n for s, n in statuses.items() if not 200 <= s < 300)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--bidders", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK:
        parser.error("loads target loopback only")
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be within 1..120 s")
    session_id, tokens = setup(args.bidders)
    result = asyncio.run(flood(args.url, session_id, tokens, args.duration, args.concurrency))
    print(f"bids: {result['requests']} in {result['seconds']:.1f} s, concurrency {args.concurrency}, "
          f"{args.bidders} bidders")
    print(f"requests/s {result['rps']:.0f}  accepted bids/s {result['accepted_rps']:.0f}  "
          f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  non-2xx {result['non_2xx']}  "
          f"statuses {result['statuses']}")


if __name__ == "__main__":
    main()
