"""Publishing frames (leaderboard.frames) from sync code (Celery tasks, commands): delivered, and
nothing left open behind."""

import gc
import threading
import uuid
import warnings

import msgpack
import redis
from django.conf import settings

from core.redis import get_redis
from leaderboard.frames import board_group, publish_sync


def _layer_connections() -> int:
    client = get_redis()
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    return sum(1 for c in client.client_list() if c["name"] == "flashbid-channels" and c["db"] == db)


def test_publish_sync_from_a_worker_thread_delivers_and_closes_its_connections():
    session_id = uuid.uuid4()
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub()  # bytes: the layer sends msgpack
    subscriber.subscribe(f"asgi__group__{board_group(session_id)}")
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    before = _layer_connections()
    gc.collect()  # earlier tests' garbage (their unclosed clients) warns now, not inside the check below

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = threading.Thread(target=lambda: [publish_sync(session_id, {"type": "results", "n": n})
                                                  for n in range(3)])
        worker.start()
        worker.join(30)
        gc.collect()

    received = []
    while len(received) < 3 and (message := subscriber.get_message(timeout=5)):
        received.append(msgpack.unpackb(message["data"]))
    subscriber.close()
    assert [m["text"] for m in received] == [f'{{"type":"results","n":{n}}}' for n in range(3)]
    assert all(m["type"] == "board.message" for m in received)
    assert _layer_connections() == before
    assert not [w for w in caught if issubclass(w.category, (ResourceWarning, RuntimeWarning))], caught
