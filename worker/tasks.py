"""Celery tasks: thin, bounded, idempotent. Each calls one service."""

import logging

from celery import shared_task

from auctions import persistence, settlement

logger = logging.getLogger(__name__)


@shared_task(name="worker.tasks.persist_bids", ignore_result=True)
def persist_bids() -> dict:
    """Drain every open session's bid stream into PostgreSQL (bounded batches)."""
    written = persistence.bids_persist_all()
    if written["events"]:
        logger.info("persist_bids wrote %(events)s events, %(bids)s bids", written)
    return written


@shared_task(name="worker.tasks.settle_sessions", ignore_result=True)
def settle_sessions() -> dict:
    """Settle every session whose end has passed by Redis's clock, each exactly once."""
    settled = settlement.sessions_settle_due()
    if settled:
        logger.info("settle_sessions settled %d session(s)", len(settled))
    return {"settled": settled}
