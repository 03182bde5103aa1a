"""The Celery app `flashbid` (celery -A flashbid ...) and its beat schedule."""

import os

from celery import Celery

from core.observability import celery_signals_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashbid.settings")

app = Celery("flashbid")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
celery_signals_connect()  # request ids into tasks and their log lines


@app.on_after_finalize.connect
def setup_schedule(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    persist_every = settings.PERSIST_INTERVAL_SECONDS
    settle_every = settings.SETTLE_INTERVAL_SECONDS
    # `expires`: a tick that waited longer than one interval in the queue is dropped, not piled up.
    sender.conf.beat_schedule = {
        "persist-bids": {
            "task": "worker.tasks.persist_bids",
            "schedule": persist_every,
            "options": {"expires": persist_every},
        },
        "settle-sessions": {
            "task": "worker.tasks.settle_sessions",
            "schedule": settle_every,
            "options": {"expires": settle_every},
        },
    }
