"""A session's live state in Redis: its keys, its Lua scripts, the parameter hash, the place_bid
call, and the primitives of closing and restoring it (auctions.recovery decides when).

The state is *whole* when params and meta carry the same `epoch`; only a restore from PostgreSQL
(state_write) writes one, so a state Redis lost in part (a flush, a restart without AOF, an
eviction) is never taken for a session without bids: every script refuses it with "no_params".

Every key of a session shares the hash tag {<session_id>} (core.redis.session_key), so each
script and each MULTI stays valid on Redis Cluster. A MULTI is asked for by name
(`pipeline(transaction=True)`): redis-py's cluster pipeline is not one by default.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

from django.core.signals import setting_changed
from django.dispatch import receiver

from auctions.models import Bid, BiddingSession, SessionStatus
from auctions.rules import price_to_cents, rank_member, to_us
from core.redis import get_async_redis, get_redis, key, session_key
from core.scripts import batched, lua_sources
from core.scripts import script as registered_script

SOURCES = lua_sources(Path(__file__).resolve().parent / "lua", "place_bid", "board_page", "my_bid")
# How long a session's live keys outlive its settlement.
SETTLED_KEYS_TTL_SECONDS = 7 * 24 * 3600
# How long "no such session" is remembered, so unknown ids do not each cost a query.
MISSING_TTL_SECONDS = 30


@dataclass(frozen=True, slots=True)
class SessionKeys:
    params: str
    rank: str
    bids: str
    stream: str
    meta: str
    names: str

    def all(self) -> list[str]:
        return [self.params, self.rank, self.bids, self.stream, self.meta, self.names]


@functools.lru_cache(maxsize=1024)
def session_keys(session_id: object) -> SessionKeys:
    """A session's keys, remembered: every bid needs them (six names, six reads of a setting)."""
    return SessionKeys(
        params=session_key(session_id, "params"),
        rank=session_key(session_id, "rank"),
        bids=session_key(session_id, "bids"),
        stream=session_key(session_id, "stream"),
        meta=session_key(session_id, "meta"),
        names=session_key(session_id, "names"),
    )


@receiver(setting_changed)
def _keys_forget(*, setting: str, **kwargs) -> None:
    if setting == "REDIS_KEY_PREFIX":
        session_keys.cache_clear()


def script(client, name: str):
    """One of this module's scripts (place_bid, board_page, my_bid), registered for `client`."""
    return registered_script(client, name, SOURCES[name])


def async_script(name: str):
    """The script for this loop's async client; under load, the calls made while one is under way
    go out together as one pipeline (core.scripts.batched)."""
    return batched(script(get_async_redis(), name))


def params_fields(session: BiddingSession) -> dict[str, str]:
    fields = {
        "start_us": str(to_us(session.start_time)),
        "end_us": str(to_us(session.end_time)),
        "upset_cents": str(price_to_cents(session.upset_price)),
        "alpha": repr(float(session.alpha)),
        "beta": repr(float(session.beta)),
        "gamma": repr(float(session.gamma)),
        "inventory": str(session.inventory),
        "win_us": str(session.extend_window_seconds * 1_000_000),
        "by_us": str(session.extend_by_seconds * 1_000_000),
        "hard_us": str(to_us(session.hard_end_time)) if session.hard_end_time else "0",
    }
    if session.status == SessionStatus.SETTLED:
        fields["settled"] = "1"
    return fields


def params_store(session: BiddingSession) -> None:
    """Rewrite the session's terms in its parameter hash after an admin edit. Keeps what the hash
    says about the live state itself (`epoch`, and `ext_us`: the end extensions reached, which
    PostgreSQL may not hold yet): a hash that had no epoch stays not whole, and the next reader
    restores the state. An end moved into the future reopens a closed session."""
    keys = session_keys(session.pk)
    reopened = session.status != SessionStatus.SETTLED and to_us(session.end_time) > redis_clock_us()
    pipe = get_redis().pipeline(transaction=True)
    pipe.hdel(keys.params, "missing", "settled", *(["closed"] if reopened else []))
    pipe.hset(keys.params, mapping=params_fields(session))
    pipe.execute()


def missing_remember(session_id: object) -> None:
    """Remember briefly that there is no such session, so repeated unknown ids cost one query per
    MISSING_TTL_SECONDS."""
    pipe = get_redis().pipeline(transaction=True)
    pipe.hset(session_key(session_id, "params"), mapping={"missing": "1", "start_us": "0"})
    pipe.expire(session_key(session_id, "params"), MISSING_TTL_SECONDS)
    pipe.execute()


# Every session id PostgreSQL holds (kept with the sessions: auctions.receivers; rebuilt by
# auctions.recovery when Redis lost it), so that an unknown id costs no SQL. The sentinel member
# says the set is whole: only a rebuild adds it, after every id. A set without it (Redis lost the
# set, then a session saved since added its own id) answers nothing, so the others are not taken
# for unknown ones; it is rebuilt first.
KNOWN_SESSIONS_KEY = key("sessions")
KNOWN_SENTINEL = "-"


def known_add(*session_ids: object) -> None:
    get_redis().sadd(KNOWN_SESSIONS_KEY, *map(str, session_ids))


def known_whole() -> None:
    """Mark the set whole: every session id PostgreSQL held is in it (auctions.recovery)."""
    get_redis().sadd(KNOWN_SESSIONS_KEY, KNOWN_SENTINEL)


def known_is_whole() -> bool:
    return bool(get_redis().sismember(KNOWN_SESSIONS_KEY, KNOWN_SENTINEL))


def known_remove(session_id: object) -> None:
    get_redis().srem(KNOWN_SESSIONS_KEY, str(session_id))


async def known_check(session_id: object) -> bool | None:
    """Whether PostgreSQL holds this session, from Redis alone; None when the set is not whole."""
    whole, member = await get_async_redis().smismember(KNOWN_SESSIONS_KEY, [KNOWN_SENTINEL, str(session_id)])
    return bool(member) if whole else None


def params_forget(session_id: object) -> None:
    get_redis().delete(session_key(session_id, "params"))


def is_whole(session_id: object) -> bool:
    """Whether the session's live state is whole: params and meta carry the same epoch (what
    every script checks before it trusts the state)."""
    keys = session_keys(session_id)
    pipe = get_redis().pipeline(transaction=False)
    pipe.hmget(keys.params, "start_us", "epoch", "missing")
    pipe.hget(keys.meta, "epoch")
    (start_us, epoch, missing), meta_epoch = pipe.execute()
    return bool(start_us and epoch and not missing and epoch == meta_epoch)


def wholeness_break(session_id: object) -> None:
    """Make every script refuse the state (bids answer `recovering` or wait) until a restore
    writes a new epoch."""
    get_redis().hdel(session_keys(session_id).params, "epoch")


def counters(session_id: object) -> tuple[int, int]:
    """(seq, ver) as Redis holds them now (0 when missing)."""
    seq, ver = get_redis().hmget(session_keys(session_id).meta, "seq", "ver")
    return int(seq or 0), int(ver or 0)


_SEQ_FLOOR = """
local seq = tonumber(redis.call("HGET", KEYS[1], "seq") or "0")
if seq < tonumber(ARGV[1]) then
  redis.call("HSET", KEYS[1], "seq", ARGV[1])
  return 1
end
return 0
"""


def seq_floor_raise(session_id: object, seq: int) -> bool:
    """Make sure the next seq Redis hands out is above `seq` (one PostgreSQL already holds).
    True if Redis was below it: it had lost writes."""
    client = get_redis()
    return bool(registered_script(client, "seq_floor", _SEQ_FLOOR)(keys=[session_keys(session_id).meta],
                                                                   args=[seq]))


_CLOSE = """
local ext = redis.call("HGET", KEYS[1], "ext_us")
local end_us = tonumber(ARGV[1])
if ext and tonumber(ext) > end_us then
  end_us = tonumber(ext)
end
local t = redis.call("TIME")
local end_text = string.format("%.0f", end_us)
if tonumber(t[1]) * 1000000 + tonumber(t[2]) < end_us then
  return {0, end_text}
end
redis.call("HSET", KEYS[1], "closed", "1")
return {1, end_text}
"""


def close(session_id: object, *, end_us: int) -> tuple[bool, int]:
    """Settlement has begun: the bid script refuses every bid from now on, whatever the clocks or
    stale parameters say. `end_us` is the end PostgreSQL holds, which the caller has seen pass;
    only a soft-close extension PostgreSQL does not hold yet (`ext_us`, written by the bid script
    alone) can keep the session open, checked in the same atomic step by Redis's clock. The
    parameters' own `end_us` is not consulted: it may be stale. Returns (closed, the effective
    end in microseconds)."""
    client = get_redis()
    done, effective = registered_script(client, "close", _CLOSE)(keys=[session_keys(session_id).params],
                                                                  args=[end_us])
    return bool(done), int(effective)


def reopen(session_id: object) -> None:
    """Undo `close` (the end was moved into the future before the settlement committed)."""
    get_redis().hdel(session_keys(session_id).params, "closed")


def state_write(session: BiddingSession, *, bids: list[Bid], names: dict[str, str], seq: int, version: int,
                epoch: str, closed: bool) -> None:
    """Replace the session's live state with `bids` (PostgreSQL's), in one MULTI: the ranking with
    the stored scores and tie order (seq), each bidder's price, names, highest price, the counters,
    and the new `epoch` in params and meta together, which makes the state whole again."""
    keys = session_keys(session.pk)
    pipe = get_redis().pipeline(transaction=True)
    pipe.delete(keys.rank, keys.bids, keys.names, keys.meta, keys.params)
    fields = params_fields(session)
    fields["epoch"] = epoch
    if closed:
        fields["closed"] = "1"
    pipe.hset(keys.params, mapping=fields)
    for bid in bids:
        user_id = str(bid.bidder_id)
        member = rank_member(seq=bid.seq, user_id=user_id)
        score_text = repr(bid.score)
        pipe.zadd(keys.rank, {member: score_text})
        pipe.hset(keys.bids, user_id, f"{price_to_cents(bid.price)}|{bid.seq}|{score_text}|"
                                      f"{to_us(bid.accepted_at)}|{member}")
        pipe.hset(keys.names, user_id, names[user_id])
    highest = max((price_to_cents(b.price) for b in bids), default=0)
    pipe.hset(keys.meta, mapping={"seq": seq, "ver": version, "hi": highest, "epoch": epoch})
    if session.status == SessionStatus.SETTLED:
        for name in keys.all():
            pipe.expire(name, SETTLED_KEYS_TTL_SECONDS)
    pipe.execute()


def rate_key(session_id: object, user_id: str) -> str:
    return session_key(session_id, f"rl:{user_id}")


def idem_key(session_id: object, user_id: str, idempotency_key: str | None) -> str:
    # Without a client key the script still needs a key name in the session's slot; it is not used.
    return session_key(session_id, f"idem:{user_id}:{idempotency_key or '-'}")


def place_bid_call(session_id: object, *, user_id: str, username: str, price: str, cents: int, weight: float,
                   rate_limit: int, idem_ttl: int, idempotency_key: str | None = None) -> tuple[list, list]:
    """(KEYS, ARGV) of place_bid.lua for one bid (the script's header documents both)."""
    keys = session_keys(session_id)
    return ([keys.params, keys.rank, keys.bids, keys.stream, keys.meta, keys.names,
             rate_key(session_id, user_id), idem_key(session_id, user_id, idempotency_key)],
            [user_id, username, price, cents, repr(weight), rate_limit, idem_ttl, 1 if idempotency_key else 0])


def redis_clock_us() -> int:
    seconds, micros = get_redis().time()
    return int(seconds) * 1_000_000 + int(micros)
