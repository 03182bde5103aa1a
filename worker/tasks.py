"""Celery tasks: thin, bounded, idempotent. Each calls one service.

An unreachable Redis or PostgreSQL is an expected outage, not a bug: the task logs it and returns,
and the next beat tick tries again (stream entries stay in Redis until they are written)."""

import logging

import redis
from celery import shared_task
from django.conf import settings
from django.db import Error as DatabaseError

from auctions import recovery, result_mail, settlement, verification

logger = logging.getLogger(__name__)

# On a cluster also a shard that is down (ClusterDownError) or a slot no reachable node serves.
OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ClusterDownError,
           redis.exceptions.SlotNotCoveredError, DatabaseError)


def _run(task: str, service, retry_hint: str):
    """Call the task's service; an outage is logged with `retry_hint` and answered as {"error"}."""
    try:
        return service()
    except OUTAGES as exc:
        logger.warning("%s failed (%s: %s); %s", task, type(exc).__name__, exc, retry_hint, exc_info=True)
        return {"error": type(exc).__name__}


@shared_task(name="worker.tasks.persist_bids", ignore_result=True)
def persist_bids() -> dict:
    """Beat, every PERSIST_INTERVAL_SECONDS: hand the open sessions out to the workers in shares
    (persist_sessions tasks) and persist the first share here: each session's stream drained into
    PostgreSQL under its lease (bounded batches), its live state repaired if Redis lost it
    (auctions.recovery)."""
    def share_out(share: list[str]) -> None:
        _hand_out(persist_sessions, share, expires=settings.PERSIST_INTERVAL_SECONDS)

    return _persisted("persist_bids", lambda: recovery.persist_tick(
        share_out=share_out, budget_seconds=settings.PERSIST_INTERVAL_SECONDS))


@shared_task(name="worker.tasks.persist_sessions", ignore_result=True)
def persist_sessions(session_ids: list[str]) -> dict:
    """One share of a persist tick: these sessions, each under its lease (auctions.recovery)."""
    return _persisted("persist_sessions", lambda: recovery.persist_tick(
        session_ids=session_ids, budget_seconds=settings.PERSIST_INTERVAL_SECONDS))


def _hand_out(task, share: list[str], *, expires: float) -> None:
    """Queue one share of a tick for any worker; dropped if it waited longer than a tick (the next
    tick hands its sessions out again), and if the broker cannot take it (the same)."""
    try:
        task.apply_async((share,), expires=expires)
    except Exception:  # noqa: BLE001 (a broker outage: the next tick hands the sessions out again)
        logger.warning("could not queue %s for %d session(s); the next tick hands them out again", task.name,
                       len(share), exc_info=True)


def _persisted(task: str, service) -> dict:
    written = _run(task, service, "the entries stay in the streams for the next tick")
    if "error" not in written and (written["events"] or written["left"]):
        logger.info("%s: %d session(s) drained here (%d busy elsewhere, %d left for the next tick); "
                    "%d events, %d bids written", task, len(written["drained"]), len(written["busy"]),
                    len(written["left"]), written["events"], written["bids"])
    return written


@shared_task(name="worker.tasks.settle_sessions", ignore_result=True)
def settle_sessions() -> dict:
    """Beat, every SETTLE_INTERVAL_SECONDS: hand the ended sessions out to the workers in shares
    (settle_sessions_share tasks) and settle the first share here, each exactly once; then queue
    the result mail still owed (the catch-up)."""
    def share_out(share: list[str]) -> None:
        _hand_out(settle_sessions_share, share, expires=settings.SETTLE_INTERVAL_SECONDS)

    settled = _settled("settle_sessions", lambda: settlement.sessions_settle_due(
        share_out=share_out, budget_seconds=settings.SETTLE_INTERVAL_SECONDS))
    _run("result mail catch-up", _result_mails_catch_up, "retried on the next tick")
    return settled


@shared_task(name="worker.tasks.settle_sessions_share", ignore_result=True)
def settle_sessions_share(session_ids: list[str]) -> dict:
    """One share of a settlement tick: these sessions, each under its lease (auctions.settlement)."""
    return _settled("settle_sessions_share", lambda: settlement.sessions_settle(
        session_ids, budget_seconds=settings.SETTLE_INTERVAL_SECONDS))


def _settled(task: str, service) -> dict:
    settled = _run(task, service, "retried on the next tick")
    if isinstance(settled, dict):
        return settled
    if settled:
        logger.info("%s settled %d session(s)", task, len(settled))
    return {"settled": settled}


def _result_mails_catch_up() -> None:
    """Queue the result mail of sessions that still owe it past its due time (its task was lost, or
    gave up retrying): a few per tick, each at most every RESULT_MAIL_RETRY_EVERY."""
    for session_id in result_mail.result_mails_overdue_claim():
        logger.warning("result mail of session %s still owed; queued again", session_id)
        mail_results.delay(session_id)


@shared_task(name="worker.tasks.audit_session", ignore_result=True, autoretry_for=OUTAGES, retry_backoff=5,
             max_retries=10)
def audit_session(session_id: str) -> dict:
    """Replay a settled session's bid log with the rules and record whether the settlement agrees
    (auctions.verification). Sent after every settlement's commit; idempotent."""
    difference = verification.session_audit_record(session_id=session_id)
    if difference:
        logger.error("audit of session %s failed: %s", session_id, difference)
    return {"session": session_id, "verified": difference is None}


def audit_after_settlement(sender, *, session_id: str, **kwargs) -> None:
    """Receiver of auctions.events.session_settled (WorkerConfig.ready): queue the audit. A broker
    that is down loses nothing: the settle tick audits what no task reached."""
    try:
        audit_session.delay(session_id)
    except Exception:
        logger.warning("could not queue the audit of session %s; the settle tick will run it", session_id,
                       exc_info=True)


# Failures worth retrying: smtplib's errors, a refused or timed-out connection (all OSError), and
# PostgreSQL. Backoff 5 s doubling, up to 2 min, with jitter: 6 retries take under 5 minutes, less
# than the catch-up's RESULT_MAIL_RETRY_EVERY, which takes over from a task that gave up.
MAIL_FAILURES = (OSError, DatabaseError)


@shared_task(name="worker.tasks.mail_results", ignore_result=True, autoretry_for=MAIL_FAILURES, retry_backoff=5,
             retry_backoff_max=120, max_retries=6)
def mail_results(session_id: str) -> dict:
    """Mail each winner of a settled session their result, exactly once (auctions.result_mail).
    Sent after every settlement's commit; idempotent: a retry or a duplicate mails only the winners
    not yet marked. One run mails at most MAILS_PER_RUN winners (one mail server round trip and one
    short transaction each) and queues the next run for the rest."""
    outcome = result_mail.result_mails_send(session_id=session_id)
    if outcome.remaining:
        mail_results.delay(session_id)
    return {"session": session_id, "sent": outcome.sent, "skipped": outcome.skipped, "remaining": outcome.remaining}


def mail_results_after_settlement(sender, *, session_id: str, **kwargs) -> None:
    """Receiver of auctions.events.session_settled (WorkerConfig.ready): queue the result mail. A
    broker that is down loses nothing: the settle tick queues what is still owed after a minute."""
    try:
        mail_results.delay(session_id)
    except Exception:
        logger.warning("could not queue the result mail of session %s; the settle tick will", session_id,
                       exc_info=True)
