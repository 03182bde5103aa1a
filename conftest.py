"""Fixtures shared by every app's tests: a clean Redis database, fast password hashing, users,
tokens and sessions. Tests run on real PostgreSQL (a test database) and real Redis (database 15).

Tests marked `cluster` run twice: on that Redis ([single]) and with the engine on a Redis Cluster of
3 masters started for the test session ([cluster]; the broker, the channel layer and the cache
stay on the plain Redis, as deployed). `--redis-cluster=off` runs only the first, `only` only the
second; REDIS_TEST_CLUSTER_URL names a cluster of one's own instead (it is flushed: a test one)."""

import datetime as dt
import itertools
import os
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

_counter = itertools.count(1)


def pytest_addoption(parser):
    parser.addoption("--redis-cluster", choices=("also", "off", "only"), default="also",
                     help="tests marked `cluster`: also on a Redis Cluster (default), not, or only there "
                          "(`only` deselects every other test)")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("cluster")
    if "engine_redis" in metafunc.fixturenames and marker:
        modes = {"also": ["single", "cluster"], "off": ["single"], "only": ["cluster"]}
        modes = modes[metafunc.config.getoption("redis_cluster")]
        if marker.kwargs.get("only"):  # a test of the cluster itself
            modes = [mode for mode in modes if mode == "cluster"]
        metafunc.parametrize("engine_redis", modes, indirect=True)


def pytest_collection_modifyitems(config, items):
    if config.getoption("redis_cluster") != "only":
        return
    selected = [item for item in items if item.get_closest_marker("cluster")]
    config.hook.pytest_deselected(items=[item for item in items if not item.get_closest_marker("cluster")])
    items[:] = selected


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory):
    """The URL of a node of the tests' Redis Cluster (started on first use, stopped at the end)."""
    if url := os.environ.get("REDIS_TEST_CLUSTER_URL"):
        yield url
        return
    from tests.redis_cluster import LocalCluster

    cluster = LocalCluster.start(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster.url
    cluster.stop()


@pytest.fixture(autouse=True)
def engine_redis(request):
    """Where this test's engine state lives: "single" (REDIS_URL) or "cluster" (tests marked
    `cluster`, their second run: the tests' Redis Cluster)."""
    mode = getattr(request, "param", "single")
    if mode == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
        overrides = request.getfixturevalue("settings")
        # The broker, the channel layer and the cache keep their plain Redis (settings defaulted
        # them to REDIS_URL when it was one); core.redis makes new clients on this change.
        overrides.REDIS_URL = url
        overrides.REDIS_CLUSTER = True
    return mode


@pytest.fixture(scope="session", autouse=True)
def _close_db_pool_before_teardown(django_db_setup, django_db_blocker):
    """Connections opened by the app's worker threads sit in the shared psycopg pool; close it
    before pytest-django drops the test database."""
    yield
    from django.db import connection, connections

    # Connections left checked out by threads that never finished a request: end them too.
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    for conn in connections.all():
        if getattr(conn, "close_pool", None):
            conn.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _flush_by_delete():
    """A test with transaction=True ends with Django's `flush`: a TRUNCATE of every table, then the
    post_migrate signal writes the content types and permissions back, ~250 ms a test on this
    machine, for some 400 tests. Here it deletes the rows of every table but those two, which stay
    as migrate wrote them (every foreign key is deferrable, so the order does not matter): ~45 ms."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush
    kept = {"django_content_type", "auth_permission"}

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED",
                *(f"DELETE FROM {self.quote_name(table)}" for table in sorted(tables) if table not in kept)]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = truncate


@pytest.fixture(autouse=True)
def _redis_clean(engine_redis):
    import redis

    from accounts.user_cache import local_clear
    from core.redis import get_redis
    from leaderboard import selectors

    client = get_redis()
    if engine_redis == "cluster":
        client.flushdb()  # every primary of the tests' own cluster
        client = redis.Redis.from_url(settings.CACHE_URL)  # the plain Redis: broker, channel layer, cache
    db = client.connection_pool.connection_kwargs.get("db", 0)
    assert db != 0, "tests refuse to flush Redis database 0: set REDIS_URL to a test database"
    client.flushdb()
    local_clear()
    selectors._meta_cache.clear()
    yield
    local_clear()


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    from accounts.models import User

    def make(*, weight: float = 1.0, is_staff: bool = False, password: str = "s3cret-pass-123", **extra):
        n = next(_counter)
        username = extra.pop("username", f"user{n}")
        user = User(username=username, email=extra.pop("email", f"{username}@example.test"),
                    weight=weight, is_staff=is_staff, **extra)
        user.set_password(password)
        user.save()
        return user

    return make


@pytest.fixture
def token_for():
    from accounts.tokens import token_issue

    def token(user) -> str:
        return token_issue(user_id=str(user.pk), token_version=user.token_version)[0]

    return token


@pytest.fixture
def auth_header(token_for):
    def header(user) -> dict:
        return {"Authorization": f"Bearer {token_for(user)}"}

    return header


@pytest.fixture
def make_session(db):
    from auctions.models import BiddingSession, Product

    def make(*, starts_in: float = -60, lasts: float = 3600, upset_price: str = "10.00", inventory: int = 3,
             alpha: float = 1.0, beta: float = 0.0, gamma: float = 0.0, **extra):
        product = Product.objects.create(name=f"product {next(_counter)}")
        start = timezone.now() + dt.timedelta(seconds=starts_in)
        return BiddingSession.objects.create(
            product=product, upset_price=Decimal(upset_price), inventory=inventory, alpha=alpha, beta=beta,
            gamma=gamma, start_time=start, end_time=start + dt.timedelta(seconds=lasts), **extra,
        )

    return make


@pytest.fixture
async def api():
    """An HTTP client speaking to the real ASGI application (Django + Channels) in-process."""
    from flashbid.asgi import application

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                 base_url="http://localhost") as client:
        yield client


def pytest_report_header(config):
    return [f"redis: {settings.REDIS_URL}; tests marked `cluster`: {config.getoption('redis_cluster')} on a "
            f"Redis Cluster ({os.environ.get('REDIS_TEST_CLUSTER_URL') or 'started for the run'})",
            f"database: {settings.DATABASES['default']['NAME']} (test_ prefix)"]


@pytest.fixture
def started(tmp_path):
    """Start real processes (tests.processes) for one test; all are stopped afterwards."""
    from tests import processes

    running: list[processes.Process] = []

    def start(factory, *args, **kwargs) -> processes.Process:
        process = factory(tmp_path, *args, **kwargs)
        running.append(process)
        return process

    yield start
    processes.stop_all(list(reversed(running)))
