"""auctions.result_mail: after a real settlement each winner gets one mail (unit won, final price as
"123.45", own bid, rank, links), losers none; exactly once through repeats, duplicates running at the
same moment and failed sends; only sessions settled with the result mail owe it. Mail goes through
Django's own backends (locmem, file) and a real SMTP conversation (tests.smtp)."""

import datetime as dt
import email
import email.policy
import threading
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from auctions import live, result_mail, settlement
from auctions.models import BiddingSession, Ranking
from auctions.rules import to_us
from flashbid.email_url import mailer_from_url
from tests import processes
from tests.settled import bid_and_settle
from tests.smtp import SmtpServer

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture
def settled(make_session):
    """A session with 5 bidders and 3 units, bid through the real service, settled by the real
    settlement (its after-commit task goes to the broker, where no worker takes it)."""
    return bid_and_settle(make_session)


@pytest.fixture
def use_mailer(settings):
    def use(url: str) -> None:
        settings.MAILERS = {"default": mailer_from_url(url, timeout=5.0)}

    return use


def _sent_to() -> list[str]:
    return [to for message in mail.outbox for to in message.to]


def test_each_winner_gets_one_mail_with_the_final_price_and_losers_none(settled, settings):
    session, winners, losers = settled
    assert session.final_price == Decimal("22.10") and len(winners) == 3 and len(losers) == 2

    outcome = result_mail.result_mails_send(session_id=str(session.pk))

    assert (outcome.sent, outcome.skipped, outcome.remaining) == (3, 0, False)
    assert _sent_to() == winners  # in rank order, one each, nobody else
    first = mail.outbox[0]
    assert first.subject == f"You won a unit of {session.product.name} at 22.10"
    assert first.from_email == settings.DEFAULT_FROM_EMAIL == "FlashBid <noreply@localhost>"
    assert "You won a unit of" in first.body
    assert "Final price (what you pay):  22.10" in first.body
    assert "Your bid:                    31.50" in first.body
    assert "Your rank:                   1 (the top 3 win; 3 units offered)" in first.body
    assert f"http://localhost:8000/sessions/{session.pk}/results/" in first.body
    assert "Your bid:                    25.00" in mail.outbox[1].body
    assert "Your rank:                   3" in mail.outbox[2].body
    html, mimetype = first.alternatives[0]
    assert mimetype == "text/html" and "<td>22.10</td>" in html and "<td>31.50</td>" in html
    assert first.extra_headers["Message-ID"].startswith(f"<result.{session.pk}.")
    marked = Ranking.objects.filter(session=session, result_mailed_at__isnull=False)
    assert set(marked.values_list("is_winner", flat=True)) == {True} and marked.count() == 3
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is None


def test_running_it_again_sends_nothing_more(settled):
    session, winners, _ = settled
    result_mail.result_mails_send(session_id=str(session.pk))
    mailed_at = dict(Ranking.objects.filter(session=session).values_list("pk", "result_mailed_at"))

    again = result_mail.result_mails_send(session_id=str(session.pk))

    assert (again.sent, again.skipped) == (0, 0)
    assert _sent_to() == winners
    assert dict(Ranking.objects.filter(session=session).values_list("pk", "result_mailed_at")) == mailed_at


def test_a_run_mails_at_most_its_limit_and_says_more_remain(settled):
    session, winners, _ = settled
    first = result_mail.result_mails_send(session_id=str(session.pk), limit=2)
    assert (first.sent, first.remaining) == (2, True)
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is not None  # still owed
    second = result_mail.result_mails_send(session_id=str(session.pk), limit=2)
    assert (second.sent, second.remaining) == (1, False)
    assert _sent_to() == winners
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is None


def test_the_settlement_marks_the_mail_owed_only_when_there_are_winners(settled, make_session):
    session, _, _ = settled
    assert session.result_mail_due_at == session.settled_at + result_mail.RESULT_MAIL_GRACE
    empty = make_session(starts_in=-2, lasts=1)
    processes.wait_until(lambda: live.redis_clock_us() >= to_us(empty.end_time), 10, interval=0.05,
                         message="the session ended")
    settlement.session_settle(session_id=str(empty.pk))
    assert BiddingSession.objects.get(pk=empty.pk).result_mail_due_at is None


def test_a_session_settled_before_the_result_mail_existed_is_never_mailed(settled):
    session, _, _ = settled
    BiddingSession.objects.filter(pk=session.pk).update(result_mail_due_at=None)  # as the migration left them

    outcome = result_mail.result_mails_send(session_id=str(session.pk))

    assert (outcome.sent, outcome.remaining) == (0, False) and mail.outbox == []
    assert not Ranking.objects.filter(session=session, result_mailed_at__isnull=False).exists()
    assert result_mail.result_mails_overdue_claim() == []


def test_an_unreachable_mail_server_marks_nobody_and_once_it_is_back_each_winner_gets_one(settled, use_mailer):
    session, winners, _ = settled
    use_mailer(f"smtp://127.0.0.1:{processes.free_port()}")  # nothing listens there

    with pytest.raises(ConnectionRefusedError):
        result_mail.result_mails_send(session_id=str(session.pk))
    assert not Ranking.objects.filter(session=session, result_mailed_at__isnull=False).exists()
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is not None

    with SmtpServer() as server:
        use_mailer(server.url)
        assert result_mail.result_mails_send(session_id=str(session.pk)).sent == 3
        assert result_mail.result_mails_send(session_id=str(session.pk)).sent == 0
    assert [r.recipients for r in server.received] == [[w] for w in winners]
    assert server.received[0].message["Subject"].startswith("You won a unit of")
    assert server.received[0].message["From"] == "FlashBid <noreply@localhost>"


def test_a_failure_mid_way_keeps_the_winners_already_mailed_and_retries_only_the_rest(settled, use_mailer):
    session, winners, _ = settled
    with SmtpServer() as server:
        use_mailer(server.url)
        server.refuse[winners[1]] = "451 4.3.0 try again later"  # temporary: worth retrying

        with pytest.raises(OSError):  # smtplib.SMTPRecipientsRefused
            result_mail.result_mails_send(session_id=str(session.pk))
        assert [r.recipients for r in server.received] == [[winners[0]]]
        assert list(Ranking.objects.filter(session=session, result_mailed_at__isnull=False)
                    .values_list("rank", flat=True)) == [1]

        del server.refuse[winners[1]]
        assert result_mail.result_mails_send(session_id=str(session.pk)).sent == 2
    assert [r.recipients for r in server.received] == [[w] for w in winners]  # each exactly once


def test_a_winner_the_server_refuses_for_good_does_not_hold_up_the_others(settled, use_mailer):
    session, winners, _ = settled
    with SmtpServer() as server:
        use_mailer(server.url)
        server.refuse[winners[0]] = "550 5.1.1 no such mailbox"

        outcome = result_mail.result_mails_send(session_id=str(session.pk))

    assert (outcome.sent, outcome.skipped, outcome.remaining) == (2, 1, False)
    assert [r.recipients for r in server.received] == [[w] for w in winners[1:]]
    refused = Ranking.objects.get(session=session, rank=1)
    assert refused.result_mailed_at is None  # not sent: an operator sees who was not reached
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is None  # nothing left to retry


def test_a_winner_without_an_address_is_skipped(settled):
    session, winners, _ = settled
    from accounts.models import User

    User.objects.filter(email=winners[1]).update(email="")
    outcome = result_mail.result_mails_send(session_id=str(session.pk))
    assert (outcome.sent, outcome.skipped) == (2, 1)
    assert _sent_to() == [winners[0], winners[2]]


def test_tasks_running_at_the_same_moment_mail_each_winner_once(settled, use_mailer):
    """Four runs start together against a server that takes 0.3 s per message: they share the
    winners (a row one holds, the others skip), and nobody is mailed twice."""
    session, winners, _ = settled
    barrier, outcomes, errors = threading.Barrier(4), [], []

    def run():
        try:
            barrier.wait()
            outcomes.append(result_mail.result_mails_send(session_id=str(session.pk)))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            connection.close()

    with SmtpServer(delay=0.3) as server:
        use_mailer(server.url)
        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    assert not errors, errors
    assert sorted(r.recipients[0] for r in server.received) == sorted(winners)
    assert sum(o.sent for o in outcomes) == 3 and sum(1 for o in outcomes if o.sent) >= 2  # really shared
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is None


def test_the_file_backend_writes_one_file_per_message(settled, use_mailer, tmp_path):
    session, winners, _ = settled
    use_mailer(f"file://{tmp_path}/mail")
    result_mail.result_mails_send(session_id=str(session.pk))
    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 3 and all(f.suffix == ".eml" for f in files)
    messages = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(m["To"] for m in messages) == sorted(winners)
    assert all("Final price (what you pay):  22.10" in m.get_body(("plain",)).get_content() for m in messages)
    assert all(m["Subject"].endswith(" at 22.10") for m in messages)


def test_the_catch_up_claims_an_overdue_session_once_per_retry_interval(settled):
    session, _, _ = settled
    assert result_mail.result_mails_overdue_claim() == []  # within the grace: the task after the commit has it
    overdue = timezone.now() - dt.timedelta(seconds=1)
    BiddingSession.objects.filter(pk=session.pk).update(result_mail_due_at=overdue)

    assert result_mail.result_mails_overdue_claim() == [str(session.pk)]
    assert result_mail.result_mails_overdue_claim() == []  # claimed: not again on the next tick
    due = BiddingSession.objects.get(pk=session.pk).result_mail_due_at
    assert due > timezone.now() + result_mail.RESULT_MAIL_RETRY_EVERY - dt.timedelta(minutes=1)

    result_mail.result_mails_send(session_id=str(session.pk))
    BiddingSession.objects.filter(pk=session.pk).update(result_mail_due_at=overdue)
    result_mail.result_mails_send(session_id=str(session.pk))  # a late run finds nothing owed and says so
    assert BiddingSession.objects.get(pk=session.pk).result_mail_due_at is None
    assert result_mail.result_mails_overdue_claim() == []
