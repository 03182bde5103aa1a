"""A session's bids and settled ranking as CSV, streamed: a page of rows at a time, so 100,000
rows take constant memory (the csv module writing into a one-line buffer, Django's streaming
recipe). Used by the admin API and the Django admin's actions."""

import csv
from collections.abc import Iterator

from auctions.models import Ranking
from auctions.verification import bid_log, utc_text

BIDS_HEADER = ("seq", "user_id", "username", "price", "weight", "score", "accepted_at")
RANKING_HEADER = ("rank", "user_id", "username", "price", "score", "seq", "is_winner")


class _Line:
    """A file-like object whose write returns the line instead of keeping it."""

    def write(self, value: str) -> str:
        return value


def _csv(header: tuple, rows: Iterator[tuple]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def bids_csv(session_id) -> Iterator[str]:
    """Every persisted bid (the bid log) in seq order."""
    return _csv(BIDS_HEADER, ((b.seq, b.user_id, b.username, b.price, repr(b.weight), repr(b.score),
                               utc_text(b.accepted_at)) for b in bid_log(session_id)))


def _ranking_rows(session_id, page: int = 5_000) -> Iterator[tuple]:
    after = 0
    while True:
        rows = list(Ranking.objects.filter(session_id=session_id, rank__gt=after).order_by("rank")
                    .values_list("rank", "bidder_id", "bidder__username", "price", "score", "seq", "is_winner")[:page])
        for rank, user_id, username, price, score, seq, is_winner in rows:
            yield rank, user_id, username, price, repr(score), seq, "true" if is_winner else "false"
        if len(rows) < page:
            return
        after = rows[-1][0]


def ranking_csv(session_id) -> Iterator[str]:
    """Every ranked bidder of a settled session, in rank order."""
    return _csv(RANKING_HEADER, _ranking_rows(session_id))
