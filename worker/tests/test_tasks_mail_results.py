"""worker.tasks.mail_results: queued after every settlement's commit, retried with backoff when the
mail server fails (nobody marked, nobody mailed twice), queued again by the settle tick for a
session whose task was lost; and with a real worker, the file backend holds one mail per winner."""

import base64
import datetime as dt
import email
import email.policy
import json

import pytest
import redis
from celery.signals import task_retry
from django.conf import settings
from django.core import mail
from django.utils import timezone

from auctions.models import BiddingSession, Ranking
from flashbid.email_url import mailer_from_url
from tests import processes
from tests.settled import FINAL_PRICE, bid_and_end, bid_and_settle
from worker.tasks import mail_results, settle_sessions

pytestmark = [pytest.mark.django_db(transaction=True)]


def _queued(task: str) -> list[list]:
    """The arguments of each `task` message waiting in the broker's default queue."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    messages = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[0] for m in messages
            if m["headers"]["task"] == task]


@pytest.fixture
def use_mailer(settings):
    def use(url: str) -> None:
        settings.MAILERS = {"default": mailer_from_url(url, timeout=5.0)}

    return use


def test_the_settlement_queues_the_result_mail_after_its_commit(make_session):
    session, _, _ = bid_and_settle(make_session)
    assert _queued("worker.tasks.mail_results") == [[str(session.pk)]]


def test_the_task_mails_each_winner_once_however_often_it_runs(make_session):
    session, winners, losers = bid_and_settle(make_session)

    assert mail_results(str(session.pk)) == {"session": str(session.pk), "sent": 3, "skipped": 0, "remaining": False}
    mail_results.apply(args=[str(session.pk)])
    mail_results(str(session.pk))

    assert [m.to for m in mail.outbox] == [[w] for w in winners]
    assert not {to for m in mail.outbox for to in m.to} & set(losers)
    assert all(m.subject.endswith(f" at {FINAL_PRICE}") for m in mail.outbox)


def test_an_smtp_failure_is_retried_marks_nobody_and_the_mail_goes_out_once_the_server_is_back(
        make_session, use_mailer):
    session, winners, _ = bid_and_settle(make_session)
    use_mailer(f"smtp://127.0.0.1:{processes.free_port()}")  # nothing listens there

    with pytest.raises(ConnectionRefusedError):
        mail_results(str(session.pk))
    # Through Celery (eagerly here, without the backoff's waits): retried max_retries times, then it fails.
    retries = []

    def count(sender, reason, **kwargs):
        retries.append(reason)

    task_retry.connect(count, weak=False, dispatch_uid="test-retries")
    try:
        result = mail_results.apply(args=[str(session.pk)])
    finally:
        task_retry.disconnect(dispatch_uid="test-retries")
    assert result.failed() and isinstance(result.result, ConnectionRefusedError)
    assert len(retries) == mail_results.max_retries == 6
    assert not Ranking.objects.filter(session=session, result_mailed_at__isnull=False).exists()
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is not None

    use_mailer("locmem://")
    assert mail_results(str(session.pk))["sent"] == 3
    assert mail_results(str(session.pk))["sent"] == 0
    assert [m.to for m in mail.outbox] == [[w] for w in winners]


def test_the_settle_tick_queues_the_mail_of_a_session_whose_task_was_lost(make_session):
    session, _, _ = bid_and_settle(make_session)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("celery")  # the task after the commit is lost

    settle_sessions()
    assert _queued("worker.tasks.mail_results") == []  # within the grace: not yet
    BiddingSession.objects.filter(pk=session.pk).update(result_mail_due_at=timezone.now() - dt.timedelta(seconds=1))
    settle_sessions()
    settle_sessions()
    assert _queued("worker.tasks.mail_results") == [[str(session.pk)]]  # once, not per tick


@pytest.mark.system
def test_a_settlement_by_the_worker_leaves_one_mail_per_winner_in_the_file_backend(started, make_session, tmp_path):
    """A real worker and beat (settle every second) with EMAIL_URL=file://: the worker settles the
    session, the after-commit task mails the winners; a duplicate task sends nothing more."""
    outbox = tmp_path / "outbox"
    env = {"SETTLE_INTERVAL_SECONDS": "1", "PERSIST_INTERVAL_SECONDS": "3600", "EMAIL_URL": f"file://{outbox}"}
    session, winners, losers = bid_and_end(make_session)
    worker = started(processes.celery_worker, **env)
    started(processes.celery_beat, **env)

    processes.wait_until(lambda: outbox.exists() and len(list(outbox.glob("*.eml"))) >= 3, 30,
                         message="the winners' mail written")
    worker.wait_for_log("worker.tasks.mail_results")
    processes.wait_until(lambda: BiddingSession.objects.get(pk=session.pk).result_mail_due_at is None, 10,
                         message="the session owes no more mail")
    mail_results.delay(str(session.pk))  # a duplicate
    processes.wait_until(lambda: worker.log().count("worker.tasks.mail_results[") >= 4, 20,
                         message="the duplicate ran")  # received + succeeded, twice

    messages = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in outbox.glob("*.eml")]
    assert sorted(m["To"] for m in messages) == sorted(winners)
    assert not {m["To"] for m in messages} & set(losers)
    assert all(f"Final price (what you pay):  {FINAL_PRICE}" in m.get_body(("plain",)).get_content()
               for m in messages)
    assert Ranking.objects.filter(session=session, result_mailed_at__isnull=False).count() == 3
    assert "raised unexpected" not in worker.log()

