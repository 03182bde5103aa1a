"""The independent audit runs by itself after a settlement: the settlement's after-commit signal
queues worker.tasks.audit_session, a real worker replays the log, and `results` says verified."""

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from auctions import live, persistence
from auctions.models import BiddingSession
from auctions.rules import to_us
from auctions.selectors import results_get
from auctions.services import bid_place
from tests import bidding, processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.system]


def test_a_settlement_is_audited_by_the_worker_and_results_say_verified(started, make_session):
    started(processes.celery_worker)
    session = make_session(inventory=2, alpha=1.0, beta=20.0, gamma=2.0, starts_in=-1, lasts=3)
    users = bidding.bidders(3)
    for user, price in zip(users, ("20.00", "22.00", "21.00"), strict=True):
        async_to_sync(bid_place)(session_id=str(session.pk), user=user, price=Decimal(price))
    persistence.session_drain(session_id=str(session.pk))
    processes.wait_until(lambda: live.redis_clock_us() >= to_us(session.end_time), 10, interval=0.05,
                         message="the session ended")

    call_command("settle_session", str(session.pk))

    audited = processes.wait_until(
        lambda: (r := results_get(session_id=session.pk)) and r["audit"]["verified"] is not None and r, 30,
        message="the audit ran")
    assert audited["audit"]["verified"] is True and audited["audit"]["checked_at"] is not None
    assert len(audited["log_digest"]) == 64
    assert BiddingSession.objects.get(pk=session.pk).audit_detail == ""
