"""core.ratelimit: moving windows in Redis (the `limits` library), shared by async and sync code,
and the client address the per-address limits are keyed by."""

import pytest
from django.test import RequestFactory

from core.ratelimit import client_address, limit_check, limit_check_sync, limit_hit, limit_hit_sync

pytestmark = pytest.mark.cluster  # the windows live with the engine's state, also on a cluster


async def test_hits_are_counted_up_to_the_rate_then_refused_with_the_wait():
    assert [await limit_hit("3 per minute", "test", "a") for _ in range(3)] == [None, None, None]
    wait = await limit_hit("3 per minute", "test", "a")
    assert 1 <= wait <= 60
    assert 1 <= await limit_check("3 per minute", "test", "a") <= 60
    assert await limit_check("3 per minute", "test", "b") is None  # other identifiers, other window


async def test_a_check_counts_nothing():
    for _ in range(5):
        assert await limit_check("1 per minute", "test", "a") is None
    assert await limit_hit("1 per minute", "test", "a") is None


def test_sync_and_async_code_share_one_window():
    assert limit_hit_sync("2 per minute", "test", "a") is None
    assert limit_hit_sync("2 per minute", "test", "a") is None
    assert limit_check_sync("2 per minute", "test", "a") is not None


async def test_an_empty_rate_is_no_limit():
    for _ in range(3):
        assert await limit_hit("", "test", "a") is None
    assert limit_hit_sync("", "test", "a") is None


@pytest.mark.parametrize(("remote_addr", "expected"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("", "unknown"),
])
def test_the_client_address_is_the_peer_and_an_ipv6_client_its_64(remote_addr, expected):
    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_address(request) == expected
