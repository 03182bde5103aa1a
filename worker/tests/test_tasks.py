"""The tasks (worker.tasks) and their schedule (flashbid.celery) with a real Celery worker and beat:
beat's ticks reach the worker, which runs the tasks."""

import pytest
from asgiref.sync import async_to_sync

from accounts.user_cache import get_current_user
from auctions.models import Bid
from auctions.rules import price_parse
from auctions.services import bid_place
from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]


def test_worker_runs_a_task_sent_to_the_broker(started, make_user, make_session):
    from worker.tasks import persist_bids

    worker = started(processes.celery_worker)
    worker.wait_for_log("ready.")
    session, user = make_session(), make_user()
    async_to_sync(_bid)(session.pk, user, "15.00")
    persist_bids.delay()
    processes.wait_until(lambda: Bid.objects.filter(session=session).exists(), 20, message="bid persisted")
    worker.wait_for_log("worker.tasks.persist_bids")


def test_beat_schedules_both_tasks_and_the_worker_runs_them(started):
    env = {"PERSIST_INTERVAL_SECONDS": "1", "SETTLE_INTERVAL_SECONDS": "1"}
    worker = started(processes.celery_worker, **env)
    started(processes.celery_beat, **env)
    worker.wait_for_log("Task worker.tasks.persist_bids", timeout=30)
    worker.wait_for_log("Task worker.tasks.settle_sessions", timeout=30)
    worker.wait_for_log("succeeded", timeout=30)


async def _bid(session_id, user, price: str):
    current = await get_current_user(str(user.pk))
    return await bid_place(session_id=session_id, user=current, price=price_parse(price))
