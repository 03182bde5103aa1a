"""The user cache (accounts.user_cache): a change to a user (here an admin's weight change) is
written to the Redis user hash at once, and read through the cache layers by the next request;
every web process hears each change on the change channel and forgets its copy at once, so while
it listens a warm bid reads no user from Redis; a process that stops hearing the channel clears its
copies, keeps new ones for the short TTL only, and subscribes again."""

import asyncio
import itertools
import time

import hiredis
import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from redis.asyncio.connection import AbstractConnection

from accounts import user_cache
from accounts.models import User
from accounts.services import user_password_change, user_set_weight, user_tokens_revoke
from accounts.user_cache import get_current_user_sync, local_clear, user_cache_store, user_hash_key
from core.redis import get_redis
from tests import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


@pytest.fixture
def admin(make_user):
    return make_user(is_staff=True)


async def test_weight_set_by_an_admin_is_reflected_by_me_and_the_redis_user_hash(api, admin, bidder, auth_header):
    bidder_headers = auth_header(bidder)
    assert (await api.get("/api/auth/me", headers=bidder_headers)).json()["weight"] == 1.0

    response = await api.patch(f"/api/admin/users/{bidder.pk}", json={"weight": 3.25}, headers=auth_header(admin))
    assert response.status_code == 200, response.text

    me = await api.get("/api/auth/me", headers=bidder_headers)
    assert me.status_code == 200
    assert me.json()["weight"] == 3.25
    assert float(get_redis().hget(user_hash_key(bidder.pk), "weight")) == 3.25


async def test_weight_set_by_an_admin_is_used_by_the_next_bid(api, admin, bidder, auth_header, make_session):
    session = await sync_to_async(make_session)(alpha=0.0, beta=0.0, gamma=10.0)
    await api.patch(f"/api/admin/users/{bidder.pk}", json={"weight": 3.25}, headers=auth_header(admin))
    local_clear()  # any process's in-process auth cache has expired
    response = await api.post(f"/api/sessions/{session.pk}/bids", json={"price": "20.00"},
                              headers=auth_header(bidder))
    assert response.status_code == 201, response.text
    assert response.json()["score"] == 32.5


def test_a_cold_fill_that_read_the_row_before_a_revocation_does_not_undo_it(bidder):
    read_before = User.objects.get(pk=bidder.pk)
    user_tokens_revoke(user_id=str(bidder.pk))
    stored = user_cache_store(read_before, fill=True)  # the slow cold miss finishes last
    assert stored["ver"] == get_redis().hget(user_hash_key(bidder.pk), "ver") == "1"
    local_clear()
    assert get_current_user_sync(str(bidder.pk)).token_version == 1


def test_a_refresh_that_read_an_older_row_does_not_overwrite_a_newer_one(bidder):
    read_before = User.objects.get(pk=bidder.pk)
    user_tokens_revoke(user_id=str(bidder.pk))
    user_cache_store(read_before)
    assert get_redis().hget(user_hash_key(bidder.pk), "ver") == "1"


def test_a_hash_written_before_versions_were_postgresql_first_reads_as_a_miss(bidder):
    """Such a hash may hold a version PostgreSQL never had (a rehash at login moved it in Redis only)."""
    key = user_hash_key(bidder.pk)
    fields = get_redis().hgetall(key)
    get_redis().delete(key)
    get_redis().hset(key, mapping={**{k: v for k, v in fields.items() if k != "ver"}, "tv": "7"})
    local_clear()
    assert get_current_user_sync(str(bidder.pk)).token_version == 0
    assert get_redis().hgetall(key).keys() == fields.keys()


# --- The change channel (accounts.user_cache.ChangeSubscriber) -----------------------------------

def _subscriber_connections() -> list[dict]:
    """The change subscribers' connections to this test Redis database (not other databases': the
    Redis server may be shared)."""
    # The server (on a cluster: the node) REDIS_URL names, which the subscriber connects to.
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        return [c for c in client.client_list(_type="pubsub")
                if c["name"] == user_cache.SUBSCRIBER_CLIENT_NAME and int(c["db"]) == db]
    finally:
        client.close()


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)


_CONNECTION_COMMANDS = frozenset({"HELLO", "AUTH", "CLIENT", "SELECT", "PING"})


@pytest.fixture
def redis_commands(monkeypatch):
    """The names of the commands the app's async Redis connections write from now on, read from the
    bytes written (the bid path packs its scripts' calls itself: core.scripts), not the subscriber's,
    nor those a connection sends for itself (its handshake when it opens, its health check's PING)."""
    sent: list[str] = []
    original = AbstractConnection.send_packed_command

    async def counting(self, command, check_health=True):
        if self.client_name != user_cache.SUBSCRIBER_CLIENT_NAME:
            reader = hiredis.Reader()
            reader.feed(command if isinstance(command, bytes) else b"".join(command))
            while (request := reader.gets()) is not False:
                if (name := request[0].decode().upper()) not in _CONNECTION_COMMANDS:
                    sent.append(name)
        return await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.fixture
async def subscribed(settings):
    """This loop's subscriber, once subscribed. The short TTL is cut to 0.2 s, so an entry that
    outlives it was kept for the long TTL."""
    settings.AUTH_LOCAL_CACHE_TTL_SECONDS = 0.2
    settings.AUTH_LOCAL_CACHE_LONG_TTL_SECONDS = 300
    subscriber = user_cache._subscriber()
    await _until(lambda: subscriber.subscribed, 10, "subscribed")
    return subscriber


async def test_a_warm_bid_makes_no_user_round_trip_while_the_change_channel_is_heard(
        api, bidder, auth_header, make_session, subscribed, redis_commands):
    session = await sync_to_async(make_session)()
    bids = f"/api/sessions/{session.pk}/bids"
    headers = auth_header(bidder)
    assert (await api.post(bids, json={"price": "11.00"}, headers=headers)).status_code == 201
    assert "HGETALL" in redis_commands  # the user, read once
    await asyncio.sleep(0.5)  # more than the short TTL
    redis_commands.clear()
    assert (await api.post(bids, json={"price": "12.00"}, headers=headers)).status_code == 201
    assert redis_commands == ["EVALSHA"]  # the bid script, nothing else


async def test_a_change_is_forgotten_locally_as_soon_as_it_is_published(api, bidder, auth_header, subscribed):
    """Another process's write (here: straight to Redis through the script, not through this
    process's local_forget) reaches this process's cache through the channel."""
    headers = auth_header(bidder)
    assert (await api.get("/api/auth/me", headers=headers)).json()["weight"] == 1.0
    bidder.weight = 4.5
    fields = user_cache.user_hash_fields(bidder)
    args = [user_cache.USER_HASH_TTL_SECONDS, "store", fields["ver"], user_cache.changes_channel(), str(bidder.pk)]
    for name, value in fields.items():
        args += [name, value]
    await sync_to_async(user_cache._user_store_script())(keys=[user_hash_key(bidder.pk)], args=args)
    await _until(lambda: user_cache._local_get(str(bidder.pk)) is None, 1, "the change heard")
    assert (await user_cache.get_current_user(str(bidder.pk))).weight == 4.5


async def test_losing_the_channel_clears_the_cache_falls_back_to_the_short_ttl_and_subscribes_again(
        api, bidder, auth_header, subscribed, monkeypatch, redis_commands):
    headers = auth_header(bidder)
    assert (await api.get("/api/auth/me", headers=headers)).status_code == 200
    assert user_cache._local_get(str(bidder.pk)) is not None
    # A gap between the loss and the new subscription long enough to look at.
    monkeypatch.setattr(user_cache, "SUBSCRIBER_RETRY_SECONDS", (1.5, 1.5))

    # This loop's subscriber is the newest (client ids only grow): an earlier test's loop may not
    # have closed its own yet.
    killed = max(int(c["id"]) for c in _subscriber_connections())
    get_redis().client_kill_filter(_id=killed)
    await _until(lambda: not subscribed.subscribed, 5, "the loss noticed")
    assert user_cache._local_get(str(bidder.pk)) is None  # cleared: changes may be missed now

    redis_commands.clear()
    assert (await api.get("/api/auth/me", headers=headers)).status_code == 200
    await asyncio.sleep(0.3)  # past the short TTL, which is all an entry gets meanwhile
    assert (await api.get("/api/auth/me", headers=headers)).status_code == 200
    assert redis_commands.count("HGETALL") == 2
    assert not subscribed.subscribed

    await _until(lambda: subscribed.subscribed, 10, "subscribed again")
    assert subscribed.subscriptions == 2
    assert [c for c in _subscriber_connections() if int(c["id"]) > killed]  # a new one


async def test_a_read_overtaken_by_a_change_message_is_kept_only_briefly(bidder, subscribed):
    since = user_cache._generation
    user = await user_cache.get_current_user(str(bidder.pk))
    user_cache.local_forget(str(bidder.pk))  # a message arrives while the read is in flight
    user_cache._local_put(user, long_since=since)
    assert user_cache._local[str(bidder.pk)][1] == 0.2
    user_cache._local_put(user, long_since=user_cache._generation)
    assert user_cache._local[str(bidder.pk)][1] == 300


def test_sync_readers_keep_entries_for_the_short_ttl_only(bidder, settings):
    settings.AUTH_LOCAL_CACHE_TTL_SECONDS = 0.2
    local_clear()
    get_current_user_sync(str(bidder.pk))
    assert user_cache._local[str(bidder.pk)][1] == 0.2


@pytest.mark.system
def test_every_revocation_and_change_reaches_another_web_process_well_within_a_second(
        started, make_user, token_for, make_session):
    """A daphne whose short TTL is 30 s (so only the channel can explain a fast change) holds the
    user in its cache; logout, a password change, a deactivation and a weight change made in this
    process each reach it within well under a second."""
    port = processes.free_port()
    started(processes.daphne, port, AUTH_LOCAL_CACHE_TTL_SECONDS="30", AUTH_LOCAL_CACHE_LONG_TTL_SECONDS="300",
            BID_RATE_LIMIT_PER_SECOND="1000")
    base = f"http://127.0.0.1:{port}"
    session = make_session(alpha=0.0, beta=0.0, gamma=10.0)  # score = 10 x the bidder's weight, as daphne knows it
    prices = itertools.count(1100)

    def me(user, token=None) -> httpx.Response:
        return httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token or token_for(user)}"},
                         timeout=10)

    def subscribed_and_warm(user) -> str:
        token = token_for(user)
        assert me(user, token).status_code == 200  # the first read starts daphne's subscriber
        processes.wait_until(lambda: _subscriber_connections(), 20, message="daphne subscribed")
        assert me(user, token).status_code == 200  # read since: in daphne's cache for the long TTL
        return token

    def reached(check) -> float:
        began = time.monotonic()
        processes.wait_until(check, 5, interval=0.01, message="the change reached daphne")
        return time.monotonic() - began

    # Logout everywhere.
    user = make_user()
    token = subscribed_and_warm(user)
    user_tokens_revoke(user_id=str(user.pk))
    delays = {"logout": reached(lambda: me(user, token).status_code == 401)}

    # Password change (through the service, as the API and pages do).
    user = make_user(password="old-pass-123456")
    token = subscribed_and_warm(user)
    user_password_change(user_id=str(user.pk), old_password="old-pass-123456", new_password="new-pass-654321x",
                         address="127.0.0.1")
    delays["password change"] = reached(lambda: me(user, token).status_code == 401)

    # Deactivation (as the admin's form saves it).
    user = make_user()
    token = subscribed_and_warm(user)
    row = User.objects.get(pk=user.pk)
    row.is_active = False
    row.save()
    delays["deactivation"] = reached(lambda: me(user, token).status_code == 401)

    # A weight change by an admin.
    user = make_user()
    token = subscribed_and_warm(user)

    def score() -> float:
        answer = httpx.post(f"{base}/api/sessions/{session.pk}/bids", json={"price": f"{next(prices) / 100:.2f}"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()["score"]

    assert score() == 10.0
    user_set_weight(user_id=str(user.pk), weight=7.5)
    delays["weight"] = reached(lambda: score() == 75.0)

    assert all(delay < 0.5 for delay in delays.values()), delays
