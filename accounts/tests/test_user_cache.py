"""The user cache (accounts.user_cache): a change to a user (here an admin's weight change) is
written to the Redis user hash at once, and read through the cache layers by the next request."""

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User
from accounts.services import user_tokens_revoke
from accounts.user_cache import get_current_user_sync, local_clear, user_cache_store, user_hash_key
from core.redis import get_redis

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
