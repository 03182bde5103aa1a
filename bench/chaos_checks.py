"""The chaos run's invariants (bench/chaos.py), as pure functions over two independent records:

- the clients' log: every request a bidder sent and what came back (status, body, times);
- PostgreSQL's durable record, read directly: the bid log (auctions_bidevent), the settled ranking
  (auctions_ranking) and the session row (auctions_biddingsession).

Nothing here imports the project: the rules are rewritten from the contract
(../shared/ARCHITECTURE.md), so a bug in the project's own rules cannot hide itself.
`selftest()` feeds each check a record that breaks it, so none of them can hold by construction.
"""

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

# The only 5xx the contract allows: 503 with {"detail", "code"} and one of these codes.
CONTRACT_503_CODES = {"recovering", "unavailable"}
EXAMPLES = 5  # violations listed per invariant


@dataclass
class Invariant:
    name: str
    held: bool
    counts: str
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Accepted:
    """A 201 as the client saw it."""
    user_id: str
    bidder: str
    price: Decimal
    seq: int
    score: float
    accepted_at: dt.datetime
    t_sent: float


@dataclass(frozen=True)
class Event:
    """One row of the bid log (auctions_bidevent)."""
    seq: int
    user_id: str
    price: Decimal
    score: float
    accepted_at: dt.datetime


@dataclass(frozen=True)
class Ranked:
    """One row of the settled ranking (auctions_ranking)."""
    user_id: str
    rank: int
    price: Decimal
    score: float
    seq: int
    is_winner: bool


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def bid_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["endpoint"] == "bid"]


def accepted_bids(records: list[dict]) -> tuple[list[Accepted], list[str]]:
    """The 201s of the clients' log, and the 201s whose body does not have the contract's fields."""
    accepted, malformed = [], []
    for r in bid_records(records):
        if r["status"] != 201:
            continue
        body = r["body"]
        try:
            accepted.append(Accepted(user_id=r["user_id"], bidder=r["bidder"], price=Decimal(r["price"]),
                                     seq=int(body["seq"]), score=float(body["score"]),
                                     accepted_at=parse_time(body["accepted_at"]), t_sent=r["t_sent"]))
            if Decimal(str(body["price"])) != Decimal(r["price"]) or str(body["user_id"]) != r["user_id"]:
                malformed.append(f"{r['bidder']} sent {r['price']}, the 201 names {body.get('price')} "
                                 f"for {body.get('user_id')}")
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            malformed.append(f"{r['bidder']} {r['price']}: 201 body {short(body, 120)} ({exc!r})")
    return accepted, malformed


def ambiguous_bids(records: list[dict]) -> list[dict]:
    """Bids whose fate the client cannot know: no answer (timeout, connection reset) or a 5xx.
    The server may or may not have accepted them; they are no promise either way."""
    return [r for r in bid_records(records) if r["status"] is None or r["status"] >= 500]


def _is_contract_503(record: dict) -> bool:
    body = record["body"]
    return (record["status"] == 503 and isinstance(body, dict) and isinstance(body.get("detail"), str)
            and body.get("code") in CONTRACT_503_CODES)


# --- the invariants --------------------------------------------------------------------------------

def short(body: object, chars: int = 150) -> str:
    """A body on one line (an HTML error page included)."""
    return " ".join(str(body).split())[:chars]


def unlogged(accepted: list[Accepted], events: list[Event]) -> list[Accepted]:
    """The 201s whose seq does not hold that bid in the bid log."""
    held = {(e.seq, e.user_id, e.price) for e in events}
    return [a for a in accepted if (a.seq, a.user_id, a.price) not in held]


def check_bid_log(accepted: list[Accepted], events: list[Event]) -> Invariant:
    """Every 201 is in the bid log exactly once, with its price and the seq its answer named (and
    the score and acceptance time it answered)."""
    by_seq = {e.seq: e for e in events}
    by_content: dict[tuple[str, Decimal], list[Event]] = defaultdict(list)
    for e in events:
        by_content[(e.user_id, e.price)].append(e)
    missing, other_seq, seq_taken, doubled, content = [], [], [], [], []
    for a in accepted:
        same = by_content.get((a.user_id, a.price), [])
        event = by_seq.get(a.seq)
        if len(same) > 1:
            doubled.append(f"{a.bidder} {a.price}: {len(same)} rows (seqs {sorted(e.seq for e in same)})")
        if event is None or (event.user_id, event.price) != (a.user_id, a.price):
            if event is not None:
                seq_taken.append(f"seq {a.seq} (201 to {a.bidder} at {a.price}) holds {event.user_id[:8]} "
                                 f"at {event.price}")
            if same:
                other_seq.append(f"{a.bidder} {a.price}: answered seq {a.seq}, logged as {[e.seq for e in same]}")
            else:
                missing.append(f"{a.bidder} {a.price} seq {a.seq} accepted {a.accepted_at:%H:%M:%S.%f}")
            continue
        if event.score != a.score or event.accepted_at != a.accepted_at:
            content.append(f"seq {a.seq}: answered score {a.score!r} at {a.accepted_at.isoformat()}, "
                           f"logged {event.score!r} at {event.accepted_at.isoformat()}")
    held = not (missing or other_seq or seq_taken or doubled or content)
    counts = (f"{len(accepted)} 201s: {len(missing)} missing, {len(other_seq)} under another seq, "
              f"{len(seq_taken)} seqs holding another bid, {len(doubled)} logged twice, "
              f"{len(content)} score/time differ")
    details = ([f"missing: {m}" for m in missing[:EXAMPLES]] + [f"other seq: {m}" for m in other_seq[:EXAMPLES]]
               + [f"seq taken: {m}" for m in seq_taken[:EXAMPLES]] + [f"twice: {m}" for m in doubled[:EXAMPLES]]
               + [f"differs: {m}" for m in content[:EXAMPLES]])
    return Invariant("every 201 in the bid log once, with its price and seq", held, counts, details)


def check_no_phantoms(events: list[Event], records: list[dict]) -> Invariant:
    """Every row of the bid log is a bid a client sent and did not see refused: a 201, or an
    ambiguous send (no answer or 5xx). A row for a refused or never-sent bid is invented."""
    possible = {(r["user_id"], Decimal(r["price"])) for r in bid_records(records)
                if r["status"] == 201 or r["status"] is None or r["status"] >= 500}
    phantoms = [e for e in events if (e.user_id, e.price) not in possible]
    return Invariant("the bid log holds only bids the clients sent", not phantoms,
                     f"{len(events)} rows, {len(phantoms)} with no matching accepted or unanswered request",
                     [f"seq {e.seq} {e.user_id[:8]} at {e.price}" for e in phantoms[:EXAMPLES]])


def seq_setbacks(accepted: list[Accepted]) -> list[tuple[Accepted, int]]:
    """The moments the seq counter went back: 201s whose seq is not above the seq of the 201
    accepted just before them (seq and accepted_at come from one atomic script, so in a correct
    system seq grows with acceptance time), with that previous seq."""
    order = sorted(accepted, key=lambda a: (a.accepted_at, a.seq))
    return [(a, prev.seq) for prev, a in zip(order, order[1:], strict=False) if a.seq <= prev.seq]


def check_seq_unique(accepted: list[Accepted]) -> Invariant:
    """A seq is never reused: no two 201s name the same seq."""
    counter = Counter(a.seq for a in accepted)
    reused = {seq: n for seq, n in counter.items() if n > 1}
    return Invariant("no seq named by two 201s", not reused,
                     f"{len(counter)} distinct seqs in {len(accepted)} 201s, {len(reused)} named more than once",
                     [f"seq {seq}: {n} answers" for seq, n in sorted(reused.items())[:EXAMPLES]])


def check_window(accepted: list[Accepted], start: dt.datetime, end: dt.datetime) -> Invariant:
    """No 201 at or after the session's (final) end_time, nor before its start."""
    late = [a for a in accepted if a.accepted_at >= end]
    early = [a for a in accepted if a.accepted_at < start]
    return Invariant("no 201 at or after end_time (nor before start)", not late and not early,
                     f"{len(late)} at/after end {end.isoformat()}, {len(early)} before start",
                     [f"{a.bidder} {a.price} seq {a.seq} accepted {a.accepted_at.isoformat()}"
                      for a in (late + early)[:EXAMPLES]])


def check_no_5xx(records: list[dict]) -> Invariant:
    """No 5xx but the contract's 503 (body {"detail", "code"}, code recovering/unavailable)."""
    bad = [r for r in records if r["status"] is not None and r["status"] >= 500 and not _is_contract_503(r)]
    contract = Counter(r["body"]["code"] for r in records if r["status"] == 503 and _is_contract_503(r))
    unanswered = sum(1 for r in records if r["status"] is None)
    by_status = Counter(f"{r['endpoint']} {r['status']}" for r in bad)
    counts = (f"{len(bad)} bad 5xx ({', '.join(f'{k}: {n}' for k, n in by_status.items()) or 'none'}); "
              f"contract 503s: {dict(contract) or 'none'}; unanswered: {unanswered}")
    return Invariant("no 5xx except the contract's 503", not bad, counts,
                     [f"{r['endpoint']} {r.get('bidder') or ''} -> {r['status']} {short(r['body'])}"
                      for r in bad[:EXAMPLES]])


def not_above(records: list[dict]) -> list[tuple[dict, Decimal]]:
    """The 201s at a price not above an earlier 201 of the same bidder (with that earlier price),
    in sending order (one request in flight per bidder)."""
    best: dict[str, Decimal] = {}
    wrong = []
    for r in sorted(bid_records(records), key=lambda r: r["t_sent"]):
        if r["status"] != 201:
            continue
        price = Decimal(r["price"])
        previous = best.get(r["user_id"])
        if previous is not None and price <= previous:
            wrong.append((r, previous))
        best[r["user_id"]] = max(price, previous or price)
    return wrong


def check_strictly_higher(records: list[dict]) -> Invariant:
    """A bidder's new bid is accepted only if strictly higher than their accepted one: each 201 is
    above every earlier 201 of the same bidder."""
    wrong = not_above(records)
    accepted = sum(1 for r in bid_records(records) if r["status"] == 201)
    return Invariant("201 only for a price above the bidder's accepted one", not wrong,
                     f"{len(wrong)} of {accepted} 201s not above the bidder's earlier 201",
                     [f"{r['bidder']}: 201 at {r['price']} after a 201 at {previous}"
                      for r, previous in wrong[:EXAMPLES]])


def expected_bids(accepted: list[Accepted], records: list[dict], events: list[Event]) -> dict[str, dict]:
    """Each bidder's live bid by the clients' log: their highest 201 (price, and the score and seq
    the answer named). An ambiguous send (no answer, 5xx) above it counts only if the bid log holds
    it (the server did accept it then; its score and seq come from that row)."""
    expected: dict[str, dict] = {}
    for a in accepted:
        current = expected.get(a.user_id)
        if current is None or a.price > current["price"] or (a.price == current["price"] and a.seq < current["seq"]):
            expected[a.user_id] = {"user_id": a.user_id, "bidder": a.bidder, "price": a.price, "score": a.score,
                                   "seq": a.seq, "source": "201"}
    logged = {(e.user_id, e.price): e for e in events}
    for r in ambiguous_bids(records):
        event = logged.get((r["user_id"], Decimal(r["price"])))
        current = expected.get(r["user_id"])
        if event is not None and (current is None or event.price > current["price"]):
            expected[r["user_id"]] = {"user_id": r["user_id"], "bidder": r["bidder"], "price": event.price,
                                      "score": event.score, "seq": event.seq, "source": "unanswered, logged"}
    return expected


def check_settled_highest(expected: dict[str, dict], ranking: list[Ranked]) -> Invariant:
    """Each bidder's settled bid (their Ranking row) is their highest accepted one; nobody without
    an accepted bid is ranked."""
    rows = {r.user_id: r for r in ranking}
    absent, wrong = [], []
    for user_id, bid in expected.items():
        row = rows.get(user_id)
        if row is None:
            absent.append(f"{bid['bidder']}: highest 201 {bid['price']} (seq {bid['seq']}), not ranked")
        elif row.price != bid["price"]:
            wrong.append(f"{bid['bidder']}: highest 201 {bid['price']} (seq {bid['seq']}), "
                         f"settled {row.price} (seq {row.seq})")
    extra = [r for r in ranking if r.user_id not in expected]
    held = not (absent or wrong or extra)
    return Invariant("each bidder's settled bid is their highest 201", held,
                     f"{len(expected)} bidders with a 201: {len(wrong)} settled at another price, "
                     f"{len(absent)} not ranked; {len(extra)} ranked without one",
                     (wrong[:EXAMPLES] + absent[:EXAMPLES]
                      + [f"ranked without a 201: {r.user_id[:8]} at {r.price}" for r in extra[:EXAMPLES]]))


def recompute(expected: dict[str, dict], inventory: int) -> dict:
    """The settlement by the contract: ranking by score desc then seq asc (the stored scores, never
    recomputed), winners the first min(K, bidders), final price the lowest price among the winners."""
    order = sorted(expected.values(), key=lambda b: (-b["score"], b["seq"]))
    winners = min(inventory, len(order))
    final = min((b["price"] for b in order[:winners]), default=None)
    kth = order[winners - 1]["price"] if winners else None
    return {"order": order, "winners": winners, "final_price": final, "kth_price": kth}


def check_ranking(expected_settlement: dict, ranking: list[Ranked]) -> Invariant:
    """The settled ranking (rank, bidder, price, score, seq) equals the recomputation."""
    order = expected_settlement["order"]
    diffs = []
    for position in range(max(len(order), len(ranking))):
        want = order[position] if position < len(order) else None
        got = ranking[position] if position < len(ranking) else None
        if want is None or got is None:
            diffs.append(f"rank {position + 1}: expected {want and want['bidder']}, settled "
                         f"{got and got.user_id[:8]}")
            continue
        if (got.rank, got.user_id, got.price, got.score, got.seq) != (position + 1, want["user_id"], want["price"],
                                                                     want["score"], want["seq"]):
            diffs.append(f"rank {position + 1}: expected {want['bidder']} {want['price']} score {want['score']!r} "
                         f"seq {want['seq']}; settled {got.user_id[:8]} {got.price} score {got.score!r} "
                         f"seq {got.seq} (rank {got.rank})")
    return Invariant("settled ranking = recomputation from the client log", not diffs,
                     f"{len(order)} expected, {len(ranking)} settled, {len(diffs)} positions differ",
                     diffs[:EXAMPLES])


def check_winners(expected_settlement: dict, ranking: list[Ranked]) -> Invariant:
    want = {b["user_id"] for b in expected_settlement["order"][:expected_settlement["winners"]]}
    got = {r.user_id for r in ranking if r.is_winner}
    names = {b["user_id"]: b["bidder"] for b in expected_settlement["order"]}
    missing, extra = sorted(want - got), sorted(got - want)
    return Invariant("winners = top min(K, bidders) of the recomputation", not missing and not extra,
                     f"{len(want)} expected, {len(got)} settled; {len(missing)} missing, {len(extra)} wrongly winning",
                     [f"should win: {names.get(u, u[:8])}" for u in missing[:EXAMPLES]]
                     + [f"should not win: {names.get(u, u[:8])}" for u in extra[:EXAMPLES]])


def check_final_price(expected_settlement: dict, stored: Decimal | None, ranking: list[Ranked]) -> Invariant:
    """final_price = the lowest price among the (recomputed) winners. When it differs, say which
    rule the stored price follows, also within the settled ranking itself (whose winners may be
    wrong for other reasons): the K-th ranked winner's price is the predecessor's rule, not ours."""
    want, kth = expected_settlement["final_price"], expected_settlement["kth_price"]
    held = stored == want
    details = []
    winners = [r for r in ranking if r.is_winner]
    settled_lowest = min((r.price for r in winners), default=None)
    settled_kth = winners[-1].price if winners else None
    if not held:
        if stored is not None and stored == kth:
            details.append(f"the stored price is the K-th ranked winner's price ({kth}): the predecessor's "
                           "rule, not the contract's lowest winning price")
        else:
            details.append(f"the stored price is neither the lowest winning price ({want}) nor the K-th "
                           f"ranked winner's ({kth}) of the recomputation")
        if winners and settled_lowest != settled_kth:
            rule = ("the K-th ranked winner's price: the predecessor's rule" if stored == settled_kth else
                    "the lowest winning price: the contract's rule" if stored == settled_lowest else "neither")
            details.append(f"within the settled ranking itself (lowest winning price {settled_lowest}, K-th ranked "
                           f"winner's {settled_kth}) the stored price is {rule}")
    elif kth != want:
        details.append(f"the K-th-ranked-price rule would have given {kth}")
    return Invariant("final_price = lowest price among the winners", held,
                     f"stored {stored}, contract {want}, K-th ranked winner's {kth}", details)


def check_results_api(results: dict | None, ranking: list[Ranked], stored: Decimal | None) -> Invariant:
    """GET /results says what PostgreSQL holds: the same winners (rank, bidder, price, score) and
    final price."""
    if results is None:
        return Invariant("results API = settled rows", False, "no results answer")
    try:
        api = [(int(w["rank"]), str(w["user_id"]), Decimal(str(w["price"])), float(w["score"]))
               for w in results["winners"]]
        api_price = None if results["final_price"] is None else Decimal(str(results["final_price"]))
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        return Invariant("results API = settled rows", False, f"malformed results: {exc!r}", [short(results)])
    rows = [(r.rank, r.user_id, r.price, r.score) for r in ranking if r.is_winner]
    held = api == rows and api_price == stored
    return Invariant("results API = settled rows", held,
                     f"{len(api)} winners in the API, {len(rows)} in PostgreSQL; final price {api_price} / {stored}",
                     [] if held else [f"API {api[:3]}…", f"PostgreSQL {rows[:3]}…"])


def check_faults(faults: list[dict], kinds: list[str]) -> Invariant:
    done = Counter(f["kind"] for f in faults if f["injected"])
    absent = [k for k in kinds if not done[k]]
    return Invariant("every fault injected at least once", not absent,
                     ", ".join(f"{k}: {done[k]}" for k in kinds),
                     [f"not injected: {k} ({'; '.join(f['detail'] for f in faults if f['kind'] == k) or 'never tried'})"
                      for k in absent])


def check_all(*, records: list[dict], events: list[Event], ranking: list[Ranked], session: dict | None,
              settled: bool, faults: list[dict], fault_kinds: list[str]) -> list[Invariant]:
    """Every invariant. `settled`: the results endpoint answered 200 (its last answer is in `records`)."""
    accepted, malformed = accepted_bids(records)
    results = [Invariant("the session settled (results 200)", settled,
                         f"status {session and session['status']}, results {'200' if settled else 'never 200'}")]
    results.append(Invariant("every 201 has the contract's body", not malformed, f"{len(malformed)} malformed",
                             malformed[:EXAMPLES]))
    results.append(check_bid_log(accepted, events))
    results.append(check_no_phantoms(events, records))
    results.append(check_seq_unique(accepted))
    if session is not None:
        results.append(check_window(accepted, session["start_time"], session["end_time"]))
    results.append(check_no_5xx(records))
    results.append(check_strictly_higher(records))
    expected = expected_bids(accepted, records, events)
    if settled and session is not None:
        settlement = recompute(expected, session["inventory"])
        results.append(check_settled_highest(expected, ranking))
        results.append(check_ranking(settlement, ranking))
        results.append(check_winners(settlement, ranking))
        results.append(check_final_price(settlement, session["final_price"], ranking))
        answers = [r["body"] for r in records if r["endpoint"] == "results" and r["status"] == 200]
        results.append(check_results_api(answers[-1] if answers else None, ranking, session["final_price"]))
    else:
        for name in ("each bidder's settled bid is their highest 201", "settled ranking = recomputation from the "
                     "client log", "winners = top min(K, bidders) of the recomputation",
                     "final_price = lowest price among the winners", "results API = settled rows"):
            results.append(Invariant(name, False, "not checkable: the session did not settle"))
    results.append(check_faults(faults, fault_kinds))
    return results


# --- self-test: every check must be able to fail ----------------------------------------------------

def selftest() -> list[str]:
    """Feed each check a clean record (must hold) and a broken one (must fail). Returns problems."""
    start = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    end = start + dt.timedelta(seconds=100)
    users = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(3)]

    def bid(n, user, price, seq, score, second, status=201):
        at = start + dt.timedelta(seconds=second)
        body = ({"seq": seq, "score": score, "accepted_at": at.isoformat().replace("+00:00", "Z"),
                 "price": price, "user_id": users[user]} if status == 201 else {"detail": "x", "code": "not_higher"})
        return {"endpoint": "bid", "bidder": f"b{user}", "user_id": users[user], "price": price, "status": status,
                "body": body, "t_sent": float(n), "t_recv": float(n) + 0.01, "error": None}

    records = [bid(1, 0, "20.00", 1, 20.0, 1), bid(2, 1, "21.00", 2, 21.0, 2), bid(3, 0, "30.00", 3, 30.0, 3),
               bid(4, 2, "25.00", 4, 31.0, 4), bid(5, 1, "19.00", 0, 0.0, 5, status=409)]
    events = [Event(int(r["body"]["seq"]), r["user_id"], Decimal(r["price"]), r["body"]["score"],
                    parse_time(r["body"]["accepted_at"])) for r in records if r["status"] == 201]
    session = {"status": "settled", "start_time": start, "end_time": end, "inventory": 2,
               "final_price": Decimal("25.00")}
    # K=2: b2 (25.00, score 31) and b0 (30.00, score 30) win, b1 (21.00) loses; the lowest winning
    # price is 25.00, the K-th ranked winner's 30.00 (the predecessor's rule).
    ranking = [Ranked(users[2], 1, Decimal("25.00"), 31.0, 4, True),
               Ranked(users[0], 2, Decimal("30.00"), 30.0, 3, True),
               Ranked(users[1], 3, Decimal("21.00"), 21.0, 2, False)]
    faults = [{"kind": "x", "injected": True, "detail": ""}]
    results_answer = {"endpoint": "results", "bidder": None, "user_id": None, "price": None, "status": 200,
                      "t_sent": 9.0, "t_recv": 9.1, "error": None,
                      "body": {"final_price": "25.00", "winners": [
                          {"rank": r.rank, "user_id": r.user_id, "price": str(r.price), "score": r.score}
                          for r in ranking if r.is_winner]}}
    records = records + [results_answer]

    def run(records=records, events=events, ranking=ranking, session=session):
        return {i.name: i.held for i in check_all(records=records, events=events, ranking=ranking, session=session,
                                                  settled=True, faults=faults, fault_kinds=["x"])}

    problems = [f"clean record: {name} violated" for name, held in run().items() if not held]
    breakages = {
        "every 201 in the bid log once, with its price and seq": dict(events=events[1:]),
        "no seq named by two 201s": dict(records=records[:3] + [bid(4, 2, "25.00", 3, 31.0, 4)]),
        "no 201 at or after end_time (nor before start)": dict(records=records + [bid(6, 1, "40.00", 5, 40.0, 100)]),
        "no 5xx except the contract's 503": dict(records=records + [{**bid(6, 1, "22.00", 0, 0, 6, status=409),
                                                                     "status": 500, "body": "<html>"}]),
        "201 only for a price above the bidder's accepted one": dict(records=records
                                                                     + [bid(6, 0, "29.00", 5, 29.0, 6)]),
        "the bid log holds only bids the clients sent": dict(events=events + [Event(9, users[1], Decimal("19.00"), 19.0,
                                                                                    start)]),
        "each bidder's settled bid is their highest 201": dict(ranking=[ranking[0], ranking[1],
                                                                        Ranked(users[1], 3, Decimal("20.00"), 21.0, 2,
                                                                               False)]),
        "settled ranking = recomputation from the client log": dict(ranking=[ranking[1], ranking[0], ranking[2]]),
        "winners = top min(K, bidders) of the recomputation": dict(ranking=[ranking[0], ranking[1],
                                                                            Ranked(users[1], 3, Decimal("21.00"), 21.0,
                                                                                   2, True)]),
        "final_price = lowest price among the winners": dict(session={**session, "final_price": Decimal("30.00")}),
        "results API = settled rows": dict(records=records + [{**results_answer, "body": {
            **results_answer["body"], "final_price": "30.00"}}]),
    }
    for name, change in breakages.items():
        held = run(**change).get(name)
        if held is not False:
            problems.append(f"broken record: {name} {'held' if held else 'missing'}")
    return problems
