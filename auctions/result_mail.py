"""The result mail: after settlement each winner gets one e-mail saying they won a unit, at what final
price, with their own bid and rank. Losers get none. Sent by worker.tasks.mail_results, queued after
the settlement's commit; the settle tick's catch-up queues it again for a session whose mail is
still owed a while later (`BiddingSession.result_mail_due_at`).

Exactly once per winner, as far as a mail server allows: each winner's Ranking row is claimed
(SELECT ... FOR UPDATE SKIP LOCKED), the message handed to the mail server, and the row marked
`result_mailed_at` in that same transaction. A send that fails rolls the claim back: the row stays
unmarked and the task retries it later, never re-sending to the winners already marked. A second
task running at the same moment (a retry, a redelivery, the catch-up) skips the locked row and
later sees it marked. The one gap left: the mail server accepted the message and the process died
(or lost PostgreSQL) before the commit, a few milliseconds; that winner is mailed once more. We
choose that (at least once) over marking before sending (at most once), where the same crash
loses the mail for good. The repeat carries the same Message-ID, which lets mail systems that
deduplicate drop it.
"""

import datetime as dt
import logging
import smtplib
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from auctions.models import BiddingSession, Ranking, SessionStatus
from core.metrics import RESULT_MAILS

logger = logging.getLogger(__name__)

# How long the task queued after the settlement's commit has before the catch-up may queue another.
RESULT_MAIL_GRACE = dt.timedelta(minutes=1)
# How often the catch-up queues a session whose mail is still owed. Longer than the task's own
# retries last (worker.tasks.mail_results), so that one session has one retrying task at a time.
RESULT_MAIL_RETRY_EVERY = dt.timedelta(minutes=10)
# Winners handled by one run of the task; the task queues itself again for the rest.
MAILS_PER_RUN = 100
# Sessions the catch-up queues per settle tick.
CATCH_UP_PER_TICK = 5


@dataclass(frozen=True, slots=True)
class ResultMailOutcome:
    session_id: str
    sent: int
    # Winners not mailed in this run for good reason: no address, or the server refused it for good.
    skipped: int
    # More winners are owed than one run handles: run again.
    remaining: bool


def _price_text(price: Decimal) -> str:
    """A price as the API writes it: "123.45"."""
    return f"{price:.2f}"


def _message(session: BiddingSession, row: Ranking, *, winners: int) -> EmailMultiAlternatives:
    site = settings.SITE_URL
    context = {
        "username": row.bidder.username,
        "product_name": session.product.name,
        "final_price": _price_text(session.final_price),
        "price": _price_text(row.price),
        "rank": row.rank,
        "winners": winners,
        "inventory": session.inventory,
        "settled_at": session.settled_at,
        "session_url": site + reverse("session", args=[session.pk]),
        "results_url": site + reverse("session-results", args=[session.pk]),
    }
    subject = " ".join(render_to_string("auctions/email/result_won_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("auctions/email/result_won.txt", context),
        to=[row.bidder.email],
        # The same for a repeat (see the module's docstring), so a deduplicating mail system drops it.
        headers={"Message-ID": f"<result.{session.pk}.{row.bidder_id}@{urlsplit(site).hostname}>"},
    )
    message.attach_alternative(render_to_string("auctions/email/result_won.html", context), "text/html")
    return message


def _refused_for_good(exc: smtplib.SMTPRecipientsRefused) -> bool:
    """The server refused the address with a permanent (5xx) answer: sending again cannot help.
    A temporary refusal (4xx, e.g. a full mailbox) is retried like any failure."""
    return bool(exc.recipients) and all(code >= 500 for code, _ in exc.recipients.values())


def _send(session: BiddingSession, row: Ranking, *, winners: int) -> str:
    """Send one winner's mail: "sent", or why it was not ("no_address", "refused"). Raises on a
    failure worth retrying.

    A mailer per message: no SMTP connection outlives a failure, or idles while the next winner is
    claimed. A session's winners are few (at most its inventory), so one handshake each is cheap."""
    if not row.bidder.email:
        logger.warning("result mail of session %s: winner %s (rank %d) has no e-mail address; not mailed",
                       session.pk, row.bidder_id, row.rank)
        return "no_address"
    try:
        mailers.default.send_messages([_message(session, row, winners=winners)])
    except smtplib.SMTPRecipientsRefused as exc:
        if not _refused_for_good(exc):
            raise
        logger.error("result mail of session %s: the mail server refused winner %s (rank %d) for good: %s",
                     session.pk, row.bidder_id, row.rank, list(exc.recipients.values()))
        return "refused"
    return "sent"


def result_mails_send(*, session_id: str, limit: int = MAILS_PER_RUN) -> ResultMailOutcome:
    """Mail the winners of a settled session whose result mail is owed, up to `limit` of them, each
    exactly once (see the module's docstring); once none is left, the session owes no more mail.
    A session that owes none (its mail is done, it had no winner, or it was settled before the
    result mail existed) is left alone.

    Takes each winner's Ranking row lock (FOR UPDATE SKIP LOCKED) for the time of its send, one
    transaction per winner. Raises what the mailer raises on a failure worth retrying (OSError:
    smtplib's errors, a refused connection, a timeout): the winner being mailed stays unmarked,
    those before stay marked."""
    session = (BiddingSession.objects.select_related("product")
               .filter(pk=session_id, status=SessionStatus.SETTLED, result_mail_due_at__isnull=False).first())
    if session is None:
        return ResultMailOutcome(session_id=str(session_id), sent=0, skipped=0, remaining=False)
    winners = Ranking.objects.filter(session=session, is_winner=True)
    winner_count = winners.count()
    sent, skipped, last_rank, exhausted = 0, [], 0, False
    for _ in range(limit):
        with transaction.atomic():
            # In rank order, past the last one this run handled; a row another task holds is skipped
            # (that task marks it, or leaves it owed for its retry).
            row = (winners.select_for_update(skip_locked=True, of=("self",)).select_related("bidder")
                   .filter(result_mailed_at__isnull=True, rank__gt=last_rank).order_by("rank").first())
            if row is None:
                exhausted = True
                break
            last_rank = row.rank
            outcome = _send(session, row, winners=winner_count)
            if outcome == "sent":
                row.result_mailed_at = timezone.now()
                row.save(update_fields=["result_mailed_at"])
        RESULT_MAILS.labels(outcome).inc()
        if outcome == "sent":
            sent += 1
        else:
            skipped.append(row.pk)
    if exhausted and not winners.filter(result_mailed_at__isnull=True).exclude(pk__in=skipped).exists():
        # Every winner is marked (or cannot be mailed). A winner still unmarked here belongs to a
        # task that has not committed yet; that task does this when it is done.
        BiddingSession.objects.filter(pk=session.pk).update(result_mail_due_at=None)
    if sent or skipped:
        logger.info("result mail of session %s: %d sent, %d not mailable", session.pk, sent, len(skipped))
    return ResultMailOutcome(session_id=str(session.pk), sent=sent, skipped=len(skipped), remaining=not exhausted)


def result_mails_overdue_claim(*, limit: int = CATCH_UP_PER_TICK) -> list[str]:
    """Sessions whose result mail is still owed past its due time (the task after the commit was
    lost, or gave up retrying), oldest first, at most `limit`. Each is claimed for
    RESULT_MAIL_RETRY_EVERY (its due time moves on by that much), so that the catch-up queues one
    session again at most that often, however many ticks or workers run it."""
    now = timezone.now()
    with transaction.atomic():
        due = list(BiddingSession.objects.select_for_update(skip_locked=True)
                   .filter(result_mail_due_at__lte=now).order_by("result_mail_due_at")
                   .values_list("pk", flat=True)[:limit])
        if due:
            BiddingSession.objects.filter(pk__in=due).update(result_mail_due_at=now + RESULT_MAIL_RETRY_EVERY)
    return [str(pk) for pk in due]
