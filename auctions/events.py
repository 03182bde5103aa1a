"""What the auction domain announces to the layers above it. The domain sends, after commit; the
real-time layer (leaderboard) connects its receivers in its AppConfig.ready. No module of auctions
knows who listens."""

from django.dispatch import Signal

# A session was settled and its results are durable. Sent after the commit, with `session_id` (str).
session_settled = Signal()
