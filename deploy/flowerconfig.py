"""Flower's configuration (celery -A flashbid flower --conf=deploy/flowerconfig.py).

Outside development Flower must not be open: with DEBUG off it refuses to start unless
FLOWER_BASIC_AUTH=user:password (comma-separated for several users) is set; Flower reads that
variable itself."""

# Module names here are read as Flower options (`logging` is one: the log level), hence the aliases.
import logging as _logging
import os as _os

# DEBUG is off unless set, as in flashbid/settings.py (`make up` sets it).
_debug = _os.environ.get("DEBUG", "false").strip().lower() in ("1", "true", "yes", "on")
if not _debug and not _os.environ.get("FLOWER_BASIC_AUTH"):
    raise SystemExit("Flower: DEBUG is off; set FLOWER_BASIC_AUTH=user:password in the environment.")

max_tasks = 10000  # tasks kept in memory for the UI


class _NoReplyAtStart(_logging.Filter):
    """Flower inspects the workers once as it starts (a broadcast of stats, registered, conf and
    active_queues, 1 s timeout). Started together with the worker (`make up`, the scale-out,
    compose), it asks before any worker listens, nobody answers, and it warned "Inspect method …
    failed" for each method. Nothing has failed: a worker announces itself by its events (-E) and
    Flower inspects it when a page needs to. So the no-reply warning is dropped; a broker
    connection error ("Inspect method … failed: <error>") and an inspection that raised (logged as
    an error) are still logged."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return record.msg != "Inspect method %s failed"


_logging.getLogger("flower.inspector").addFilter(_NoReplyAtStart())
