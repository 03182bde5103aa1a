"""A session's live state in Redis: its keys, its Lua scripts, the parameter hash loaded from
PostgreSQL on first use (cache-aside), the place_bid call, and the restore from PostgreSQL.

Every key of a session shares the hash tag {<session_id>} (core.redis.session_key), so each
script stays valid on Redis Cluster.
"""

from dataclasses import dataclass
from pathlib import Path

from auctions.models import Bid, BiddingSession, BidEvent, SessionStatus
from auctions.rules import price_to_cents, rank_member, to_us
from core.exceptions import ApplicationError, ErrorCode
from core.redis import get_async_redis, get_redis, session_key
from core.scripts import lua_sources
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


def session_keys(session_id: object) -> SessionKeys:
    return SessionKeys(
        params=session_key(session_id, "params"),
        rank=session_key(session_id, "rank"),
        bids=session_key(session_id, "bids"),
        stream=session_key(session_id, "stream"),
        meta=session_key(session_id, "meta"),
        names=session_key(session_id, "names"),
    )


def script(client, name: str):
    """One of this module's scripts (place_bid, board_page, my_bid), registered for `client`."""
    return registered_script(client, name, SOURCES[name])


def async_script(name: str):
    return script(get_async_redis(), name)


def params_fields(session: BiddingSession) -> dict[str, str]:
    fields = {
        "start_us": str(to_us(session.start_time)),
        "end_us": str(to_us(session.end_time)),
        "upset_cents": str(price_to_cents(session.upset_price)),
        "alpha": repr(float(session.alpha)),
        "beta": repr(float(session.beta)),
        "gamma": repr(float(session.gamma)),
        "inventory": str(session.inventory),
    }
    if session.status == SessionStatus.SETTLED:
        fields["settled"] = "1"
    return fields


def params_store(session: BiddingSession, pipe=None) -> None:
    """(Re)write the session's parameter hash: on first use and after every admin edit.
    With `pipe`, the commands join that pipeline (the caller executes it)."""
    keys = session_keys(session.pk)
    own = pipe is None
    pipe = get_redis().pipeline() if own else pipe
    pipe.delete(keys.params)
    pipe.hset(keys.params, mapping=params_fields(session))
    if own:
        pipe.execute()


def params_load(session_id: object) -> bool:
    """Cache-aside load of a session's parameters from PostgreSQL. False if there is no such
    session (remembered briefly, so repeated unknown ids cost one query per interval)."""
    session = BiddingSession.objects.filter(pk=session_id).first()
    if session is None:
        pipe = get_redis().pipeline()
        pipe.hset(session_key(session_id, "params"), mapping={"missing": "1", "start_us": "0"})
        pipe.expire(session_key(session_id, "params"), MISSING_TTL_SECONDS)
        pipe.execute()
        return False
    params_store(session)
    return True


def params_forget(session_id: object) -> None:
    get_redis().delete(session_key(session_id, "params"))


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


def live_state_restore(*, session_id) -> int:
    """Rebuild a session's live Redis state (params, ranking, bids, names, meta) from PostgreSQL,
    e.g. after Redis lost its data. Returns the number of bidders restored.

    Bids accepted but not yet persisted when Redis lost them cannot be restored from here: that
    window is what Redis's AOF (appendfsync everysec) covers."""
    session = BiddingSession.objects.filter(pk=session_id).first()
    if session is None:
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such session.")
    keys = session_keys(session.pk)
    bids = list(Bid.objects.filter(session=session).select_related("bidder"))
    last_seq = max([b.seq for b in bids] + list(BidEvent.objects.filter(session=session)
                                                 .values_list("seq", flat=True).order_by("-seq")[:1]) + [0])
    client = get_redis()
    version = int(client.hget(keys.meta, "ver") or 0)
    pipe = client.pipeline()
    pipe.delete(keys.rank, keys.bids, keys.names, keys.meta)
    params_store(session, pipe=pipe)
    for bid in bids:
        user_id = str(bid.bidder_id)
        member = rank_member(seq=bid.seq, user_id=user_id)
        score_text = repr(bid.score)
        pipe.zadd(keys.rank, {member: score_text})
        pipe.hset(keys.bids, user_id, f"{price_to_cents(bid.price)}|{bid.seq}|{score_text}|"
                                      f"{to_us(bid.accepted_at)}|{member}")
        pipe.hset(keys.names, user_id, bid.bidder.username)
    highest = max((price_to_cents(b.price) for b in bids), default=0)
    pipe.hset(keys.meta, mapping={"seq": last_seq, "ver": max(version, last_seq) + 1, "hi": highest})
    pipe.execute()
    return len(bids)
