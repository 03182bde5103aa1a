"""Prometheus metrics: defined once here, incremented where things happen."""

from prometheus_client import Counter, Histogram

BIDS = Counter("flashbid_bids_total", "Bid attempts by outcome (accepted or the error code).", ["outcome"])
BID_LATENCY = Histogram(
    "flashbid_bid_seconds",
    "Time to handle a bid inside the view (auth, validation, engine round trip).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
AUTH_CACHE = Counter("flashbid_auth_cache_hits_total", "User lookups answered, by cache layer.", ["layer"])
