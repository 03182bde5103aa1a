"""The bidding engine's Redis side: the session's keys, its Lua scripts, and the parameter hash
loaded from PostgreSQL on first use (cache-aside).

Scripts are registered once per client; redis-py's Script runs EVALSHA and falls back to EVAL
when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH), so no client ever sees that.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from auctions.models import BiddingSession, SessionStatus
from auctions.rules import price_to_cents
from flashbid.redis import get_async_redis, get_redis, session_key

LUA_DIR = Path(__file__).resolve().parent / "lua"
_SOURCES = {name: (LUA_DIR / f"{name}.lua").read_text() for name in ("place_bid", "board_page", "my_bid")}
_scripts: dict[tuple[int, str], object] = {}

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
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


def script(client, name: str, source: str | None = None):
    """The registered script `name` for this client (one registration per client). `source`
    for a script outside auctions/lua (the broadcaster's)."""
    cache_key = (id(client), name)
    registered = _scripts.get(cache_key)
    if registered is None:
        registered = _scripts[cache_key] = client.register_script(source or _SOURCES[name])
    return registered


def async_script(name: str):
    return script(get_async_redis(), name)


def us_to_datetime(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def to_us(moment) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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

