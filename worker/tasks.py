"""Celery tasks: thin, bounded, idempotent. Each calls one service.

An unreachable Redis or PostgreSQL is an expected outage, not a bug: the task logs it and returns,
and the next beat tick tries again (stream entries stay in Redis until they are written)."""

import logging

import redis
from celery import shared_task
from django.db import Error as DatabaseError

from auctions import persistence, settlement

logger = logging.getLogger(__name__)

OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, DatabaseError)


@shared_task(name="worker.tasks.persist_bids", ignore_result=True)
def persist_bids() -> dict:
    """Drain every open session's bid stream into PostgreSQL (bounded batches)."""
    try:
        written = persistence.bids_persist_all()
    except OUTAGES as exc:
        logger.warning("persist_bids failed (%s: %s); the entries stay in the streams for the next tick",
                       type(exc).__name__, exc, exc_info=True)
        return {"error": type(exc).__name__}
    if written["events"]:
        logger.info("persist_bids wrote %(events)s events, %(bids)s bids", written)
    return written


@shared_task(name="worker.tasks.settle_sessions", ignore_result=True)
def settle_sessions() -> dict:
    """Settle every session whose end has passed by Redis's clock, each exactly once."""
    try:
        settled = settlement.sessions_settle_due()
    except OUTAGES as exc:
        logger.warning("settle_sessions failed (%s: %s); retried on the next tick",
                       type(exc).__name__, exc, exc_info=True)
        return {"error": type(exc).__name__}
    if settled:
        logger.info("settle_sessions settled %d session(s)", len(settled))
    return {"settled": settled}
