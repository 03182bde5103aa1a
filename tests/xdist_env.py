"""A pytest plugin (pyproject's addopts: `-p tests.xdist_env`): when pytest-xdist runs the suite in
several processes (deploy/test.sh), each one gets a Redis database and key prefix of its own, set
before Django reads its settings (pytest-django gives each its own PostgreSQL test database
already), and ports of its own for the Redis Clusters the tests start."""

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

# Redis URLs a test process uses, when set; the ones not set default to REDIS_URL in the settings.
_REDIS_URLS = ("REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "CACHE_URL")


def worker_index() -> int:
    """0 outside pytest-xdist, else the worker's number (gw0, gw1, …)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _database_moved(url: str, by: int) -> str:
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - by
    if database < 1:
        raise pytest.UsageError(f"{url}: too few Redis databases below it for {by + 1} test processes "
                                "(database 0 is never flushed by the tests)")
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # After pytest-env (tryfirst too, registered later: it runs first) set the defaults, before
    # pytest-django (a plain hook) loads the settings.
    index = worker_index()
    if index == 0:
        return
    if os.environ.get("REDIS_TEST_CLUSTER_URL"):
        raise pytest.UsageError("REDIS_TEST_CLUSTER_URL names one cluster, which the tests flush: run them "
                                "in one process (-n 0)")
    for name in _REDIS_URLS:
        if url := os.environ.get(name):
            os.environ[name] = _database_moved(url, index)
    # Pub/sub channels are the server's, not a database's: the user cache's change channel
    # (fb:user-changes) would carry the other process's changes too.
    os.environ["REDIS_KEY_PREFIX"] = f"{os.environ.get('REDIS_KEY_PREFIX', 'fb')}-{index}"
