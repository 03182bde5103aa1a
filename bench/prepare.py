"""Prepare a benchmark session: a session open for an hour, `--bidders` bots with minted tokens, and
optionally `--board` bidders already ranked on it (written straight into Redis through the real
bid script, in pipelined batches). Writes "<session_id> <token>" lines to --tokens.

    .venv/bin/python bench/prepare.py --bidders 10000 --board 100000 --tokens var/bench/tokens.txt
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")

import django  # noqa: E402

django.setup()

from auctions import live, recovery  # noqa: E402
from auctions.rules import cents_to_price  # noqa: E402
from bench import simulation  # noqa: E402
from bench.bid_flood import session_create  # noqa: E402
from core.redis import get_redis  # noqa: E402
from core.scripts import script_queue  # noqa: E402


def bids_fill(session_id: str, bidders: list[tuple[str, str]], *, rounds: int = 1, batch: int = 2_000,
              start_cents: int = 200) -> int:
    """Place `rounds` rising bids for each (user id, username) through the real bid script, in
    pipelined batches (no HTTP): a board, or a stream for persist_bids, in seconds. Returns the
    number of bids placed."""
    recovery.live_state_ensure(session_id=session_id)
    client = get_redis()
    place = live.script(client, "place_bid")
    placed = 0
    for round_ in range(rounds):
        for start in range(0, len(bidders), batch):
            pipe = client.pipeline(transaction=False)
            for n, (user_id, username) in enumerate(bidders[start:start + batch], start=start):
                cents = start_cents + round_ * len(bidders) + n
                script_keys, args = live.place_bid_call(
                    session_id, user_id=user_id, username=username, price=str(cents_to_price(cents)), cents=cents,
                    weight=1.0, rate_limit=1_000_000, idem_ttl=600)  # no rate limit: one pipeline per batch
                script_queue(pipe, place, keys=script_keys, args=args)
            replies = pipe.execute()
            placed += sum(1 for reply in replies if reply[0] == "ok")
    return placed


def board_fill(session_id: str, count: int) -> None:
    """`count` synthetic bidders on the board (random ids that exist in Redis only, so their
    entries are taken out of the persist stream)."""
    import uuid

    bidders_fill = [(str(uuid.uuid4()), f"board-{n}") for n in range(count)]
    bids_fill(session_id, bidders_fill)
    get_redis().delete(live.session_keys(session_id).stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bidders", type=int, default=10_000)
    parser.add_argument("--board", type=int, default=0, help="synthetic bidders placed on the board first")
    parser.add_argument("--tokens", required=True)
    args = parser.parse_args()
    session_id = session_create()
    if args.board:
        board_fill(session_id, args.board)
    bots = simulation.bots_prepare(args.bidders, prefix="bench")
    Path(args.tokens).parent.mkdir(parents=True, exist_ok=True)
    Path(args.tokens).write_text("".join(f"{session_id} {bot.token}\n" for bot in bots))
    print(session_id)


if __name__ == "__main__":
    main()
