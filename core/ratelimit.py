"""Fixed-window counters in Redis for the endpoints that are not the bid (the bid script owns its
own limit). One round trip per check."""

from core.redis import get_async_redis


async def rate_limit_hit(keys: list[str], *, limit: int, window_seconds: int) -> int | None:
    """Count one attempt under every key; return seconds to wait if any key is over `limit`."""
    pipe = get_async_redis().pipeline(transaction=False)
    for k in keys:
        pipe.incr(k)
        pipe.expire(k, window_seconds, nx=True)
        pipe.ttl(k)
    replies = await pipe.execute()
    retry_after = None
    for i in range(len(keys)):
        count, ttl = replies[3 * i], replies[3 * i + 2]
        if count > limit:
            wait = ttl if ttl and ttl > 0 else window_seconds
            retry_after = max(retry_after or 0, wait)
    return retry_after
