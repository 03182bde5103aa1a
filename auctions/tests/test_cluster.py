"""The engine on a Redis Cluster: sessions spread over the shards, each session on one shard (its
hash tag), user hashes spread too, and scripts survive a script cache emptied on every node."""

import pytest
import redis
import redis.asyncio

from accounts.user_cache import user_hash_key
from auctions import live
from core.redis import get_redis
from tests import bidding

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster(only=True)]


def _shard(client: redis.RedisCluster, key: str) -> str:
    return client.get_node_from_key(key).name


def test_sessions_spread_over_the_shards_and_each_lives_on_one(make_session):
    client = get_redis()
    assert isinstance(client, redis.RedisCluster) and len(client.get_primaries()) == 3
    sessions = [make_session(inventory=2) for _ in range(30)]
    users = bidding.bidders(3)
    for session in sessions:
        accepted, rejected = bidding.place(session.pk, [(user, ["20.00"]) for user in users])
        assert len(accepted) == 3 and not rejected

    shards_of_sessions = {}
    for session in sessions:
        keys = live.session_keys(session.pk).all()
        shards = {_shard(client, name) for name in keys}
        assert len(shards) == 1, f"session {session.pk} spans {shards}"
        shard = shards.pop()
        node = client.get_redis_connection(client.get_node(node_name=shard))
        # The data is there, on that shard's own node: ranking, bids, stream.
        assert node.zcard(live.session_keys(session.pk).rank) == 3
        assert node.xlen(live.session_keys(session.pk).stream) == 3
        shards_of_sessions[str(session.pk)] = shard
    per_shard = {shard: sum(1 for s in shards_of_sessions.values() if s == shard)
                 for shard in {p.name for p in client.get_primaries()}}
    print(f"\n30 sessions over the shards: {per_shard}")
    assert all(per_shard.values()), per_shard  # 30 random slots: each shard holds some (all but ~1e-5)

    assert len({_shard(client, user_hash_key(user.id)) for user in bidding.bidders(30)}) == 3


def test_a_script_cache_emptied_on_every_node_never_reaches_the_bidder(make_session):
    sessions = [make_session() for _ in range(6)]
    users = bidding.bidders(2)
    for session in sessions:
        bidding.place(session.pk, [(users[0], ["20.00"])])
    get_redis().script_flush()  # every primary
    for session in sessions:
        accepted, rejected = bidding.place(session.pk, [(users[1], ["30.00"])])
        assert len(accepted) == 1 and not rejected


async def test_the_bid_paths_cluster_client_never_sends_a_command_twice():
    """A command whose connection failed may have run (a bid accepted): it is answered 503, never
    sent again by the client (core.redis._AsyncCluster; the chaos run on a cluster caught it)."""
    from core.redis import get_async_redis

    client = get_async_redis()
    assert isinstance(client, redis.asyncio.RedisCluster)
    assert client.retry.get_retries() == 0
