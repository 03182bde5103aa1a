"""Flower's configuration (celery -A flashbid flower --conf=deploy/flowerconfig.py).

Outside development Flower must not be open: with DEBUG off it refuses to start unless
FLOWER_BASIC_AUTH=user:password (comma-separated for several users) is set; Flower reads that
variable itself."""

import os

# DEBUG is off unless set, as in flashbid/settings.py (`make up` sets it).
_debug = os.environ.get("DEBUG", "false").strip().lower() in ("1", "true", "yes", "on")
if not _debug and not os.environ.get("FLOWER_BASIC_AUTH"):
    raise SystemExit("Flower: DEBUG is off; set FLOWER_BASIC_AUTH=user:password in the environment.")

max_tasks = 10000  # tasks kept in memory for the UI
