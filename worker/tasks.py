"""Celery tasks: thin, bounded, idempotent. Each calls one service.

An unreachable Redis or PostgreSQL is an expected outage, not a bug: the task logs it and returns,
and the next beat tick tries again (stream entries stay in Redis until they are written)."""

import logging

import redis
from celery import shared_task
from django.db import Error as DatabaseError

from auctions import recovery, settlement, verification

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
    """Drain every open session's bid stream into PostgreSQL (bounded batches), then repair any
    session whose live state Redis lost (auctions.recovery)."""
    written = _run("persist_bids", recovery.persist_tick, "the entries stay in the streams for the next tick")
    if written.get("events"):
        logger.info("persist_bids wrote %(events)s events, %(bids)s bids", written)
    return written


@shared_task(name="worker.tasks.settle_sessions", ignore_result=True)
def settle_sessions() -> dict:
    """Settle every session whose end has passed by Redis's clock, each exactly once."""
    settled = _run("settle_sessions", settlement.sessions_settle_due, "retried on the next tick")
    if isinstance(settled, dict):
        return settled
    if settled:
        logger.info("settle_sessions settled %d session(s)", len(settled))
    return {"settled": settled}


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
