"""Liveness, readiness and metrics endpoints for load balancers and Prometheus."""

import psycopg
import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST

from core.metrics import render as render_metrics
from core.redis import redis_client_new

CHECK_TIMEOUT_SECONDS = 2


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_postgres() -> None:
    # A fresh connection with a short timeout: the pool would wait its full timeout on an outage.
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params["connect_timeout"] = CHECK_TIMEOUT_SECONDS
    with psycopg.connect(**params) as conn:
        conn.execute("SELECT 1")


def _check_redis() -> None:
    client = redis_client_new(timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        if settings.REDIS_CLUSTER:
            client.ping(target_nodes=redis.RedisCluster.PRIMARIES)  # every shard answers
        else:
            client.ping()
    finally:
        client.close()


def _check_broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT_SECONDS)


CHECKS = {"postgres": _check_postgres, "redis": _check_redis, "broker": _check_broker}


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL, Redis and the Celery broker all answer; 503 naming those that do not."""
    results, failed = {}, []
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 (any failure means not ready)
            results[name] = f"unreachable: {type(exc).__name__}"
            failed.append(name)
    if failed:
        return JsonResponse(
            {"detail": f"Unreachable: {', '.join(failed)}.", "code": "unavailable", "checks": results},
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": results})


def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
