"""Streaming a large answer from sync code under ASGI, in constant memory.

Django's ASGI handler reads a StreamingHttpResponse over a *sync* iterator by first collecting the
whole of it into a list (it warns so). `in_batches` turns a sync iterator (one that reads the
database a page at a time) into an async one that runs the sync code a batch at a time in Django's
sync thread, so only one batch is in memory at once."""

from collections.abc import AsyncIterator, Iterator
from itertools import islice

from asgiref.sync import sync_to_async


async def in_batches(items: Iterator, size: int = 1_000) -> AsyncIterator:
    take = sync_to_async(lambda: list(islice(items, size)))
    while batch := await take():
        for item in batch:
            yield item
