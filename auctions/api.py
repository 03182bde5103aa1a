"""Sessions, bids and admin API (django-ninja routers): parse, call one service, shape the answer."""

import datetime as dt
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Literal
from uuid import UUID

import orjson
from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.request import RawPostDataException
from ninja import Field, Query, Router, Schema
from ninja import Status as HttpStatus
from pydantic import create_model

from accounts.api import UserOut
from accounts.auth import admin_auth, user_auth
from accounts.services import MAX_WEIGHT, user_set_weight
from accounts.user_cache import CurrentUser
from auctions import exports, selectors, services, settlement, verification
from auctions.rules import InvalidPrice, price_parse
from core.exceptions import ApplicationError, ErrorCode, ErrorOut, Text
from core.json import dumps, json_response
from core.routes import redis_only
from core.streaming import in_batches
from history.selectors import audit_trail
from history.services import acting_as

router = Router(tags=["sessions"])
admin_router = Router(tags=["admin"], auth=admin_auth)

Status = Literal["scheduled", "active", "ended", "settled"]


class ProductOut(Schema):
    id: int
    name: str
    description: str


class SessionOut(Schema):
    id: UUID
    product: ProductOut
    upset_price: Decimal
    inventory: int
    alpha: float
    beta: float
    gamma: float
    start_time: dt.datetime
    end_time: dt.datetime = Field(description="the effective end: the scheduled end, moved later by soft-close "
                                              "extensions")
    status: Status
    final_price: Decimal | None
    scheduled_end_time: dt.datetime = Field(description="the end the admin set")
    extend_window_seconds: int = Field(description="soft close: a bid ranking within the top K this close to "
                                                   "the end extends it (0: off)")
    extend_by_seconds: int = Field(description="soft close: the end moves to the bid's time plus this")
    hard_end_time: dt.datetime | None = Field(description="soft close: extensions never pass this (null: no cap)")


class BidIn(Schema):
    price: Decimal | str = Field(description='A price like 123.45 (number or string), > 0, at most 2 decimals')


# The answer's schema is BidResult's body fields: one spelling of the bid reply.
BidOut = create_model("BidOut", __base__=Schema, **{
    f.name: (f.type, ...) for f in fields(services.BidResult) if f.name in services.BID_BODY_FIELDS})


class SessionFilter(Schema):
    status: Status | None = None
    limit: int = Field(100, ge=1, le=500)


@router.get("/sessions", response={200: list[SessionOut], 422: ErrorOut})
def sessions_list(request: HttpRequest, filters: Query[SessionFilter]):
    return [selectors.session_as_dict(s) for s in selectors.sessions_list(status=filters.status, limit=filters.limit)]


@router.get("/sessions/{uuid:session_id}", response={200: SessionOut, 404: ErrorOut})
def session_detail(request: HttpRequest, session_id: UUID):
    session = selectors.session_get(session_id=session_id)
    if session is None:
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such session.")
    return selectors.session_as_dict(session)


def _bid_price(body: bytes) -> Decimal:
    """The price from a bid's JSON body; every malformed body is 422 `invalid_price`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApplicationError(ErrorCode.INVALID_PRICE, 'Send a JSON body like {"price": "123.45"}.') from None
    if not isinstance(data, dict) or "price" not in data:
        raise ApplicationError(ErrorCode.INVALID_PRICE, 'Send a JSON body like {"price": "123.45"}.')
    try:
        return price_parse(data["price"])
    except InvalidPrice as exc:
        raise ApplicationError(ErrorCode.INVALID_PRICE, str(exc)) from None


async def bid_answer(*, session_id: UUID, user: CurrentUser, body: bytes,
                     idempotency_key: str | None) -> tuple[int, dict]:
    """The bid endpoint once its caller is known: the body parsed, the bid placed, the answer's
    status and body (201, or 200 replaying an earlier answer to the same Idempotency-Key). The one
    implementation behind the route below (bid_submit) and behind flashbid.handlers.BidHandler,
    the hand-written ASGI path that serves the same route to bearer-token clients without
    Django's request machinery."""
    price = _bid_price(body)
    idempotency_key = idempotency_key or None
    if idempotency_key is not None and len(idempotency_key) > 200:
        raise ApplicationError(ErrorCode.INVALID, "Idempotency-Key: at most 200 characters.")
    result = await services.bid_place(session_id=session_id, user=user, price=price,
                                      idempotency_key=idempotency_key)
    return 200 if result.replayed else 201, result.body()


async def bid_submit(*, session_id: UUID, user: CurrentUser, body: bytes, idempotency_key: str | None) -> HttpResponse:
    """bid_answer as the route's HttpResponse."""
    status, data = await bid_answer(session_id=session_id, user=user, body=body, idempotency_key=idempotency_key)
    return json_response(data, status=status)


BID_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": BidIn.model_json_schema()}},
    }
}


# Also served by flashbid.handlers.BidHandler, which matches requests against this path.
BID_PATH = redis_only("/sessions/{uuid:session_id}/bids")


@router.post(
    BID_PATH,
    # 200: the replayed answer to a repeated Idempotency-Key.
    response={200: BidOut, 201: BidOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut,
              413: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    openapi_extra=BID_BODY_DOC,
    auth=user_auth,
)
async def bid_create(request: HttpRequest, session_id: UUID):
    try:
        body = request.body
    except (RequestDataTooBig, RawPostDataException):
        raise ApplicationError(ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large.") from None
    return await bid_submit(session_id=session_id, user=request.auth, body=body,
                            idempotency_key=request.headers.get("Idempotency-Key"))


class WinnerOut(Schema):
    rank: int
    user_id: UUID
    username: str
    price: Decimal
    score: float


class AuditOut(Schema):
    verified: bool | None = Field(description="null until the independent audit has run")
    checked_at: dt.datetime | None


class ResultsOut(Schema):
    session_id: UUID
    final_price: Decimal | None
    inventory: int
    total_bidders: int
    winners: list[WinnerOut]
    settled_at: dt.datetime
    log_digest: str | None = Field(description="hex SHA-256 of the bid log's canonical lines (see /log)")
    audit: AuditOut


@router.get("/sessions/{uuid:session_id}/results", response={200: ResultsOut, 404: ErrorOut, 409: ErrorOut})
def session_results(request: HttpRequest, session_id: UUID):
    _refuse_unless_exists(session_id, settled=True)
    return json_response(selectors.results_get(session_id=session_id))


def _refuse_unless_exists(session_id: UUID, *, settled: bool = False) -> None:
    """404 `not_found` for no such session; with `settled`, 409 `not_settled` before settlement."""
    if not selectors.session_exists(session_id=session_id):
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such session.")
    if settled and not selectors.session_exists(session_id=session_id, settled=True):
        raise ApplicationError(ErrorCode.NOT_SETTLED, "The session is not settled yet.")


@router.get("/sessions/{uuid:session_id}/log", response={200: None, 404: ErrorOut, 409: ErrorOut},
            openapi_extra={"responses": {200: {"description": "The bid log: one JSON object per accepted bid, in "
                                                              "seq order", "content": {"application/x-ndjson": {}}}}})
def session_log(request: HttpRequest, session_id: UUID):
    """The public bid log of a settled session, as JSON lines; its digest is `results.log_digest`."""
    _refuse_unless_exists(session_id, settled=True)
    lines = (dumps(verification.log_record(bid)) + b"\n" for bid in verification.bid_log(session_id))
    return StreamingHttpResponse(in_batches(lines), content_type="application/x-ndjson")


# --- Admin ----------------------------------------------------------------------------------

class ProductIn(Schema):
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field("", max_length=10_000)


class SessionIn(Schema):
    product_id: int
    upset_price: Decimal = Field(max_digits=12, decimal_places=2)
    inventory: int
    alpha: float = 1.0
    beta: float = 0.0
    gamma: float = 0.0
    start_time: dt.datetime
    end_time: dt.datetime = Field(description="the scheduled end")
    extend_window_seconds: int = Field(0, description="soft close (anti-sniping): an accepted bid ranking within "
                                                      "the top K less than this many seconds before the end "
                                                      "extends it; 0 (the default) turns it off")
    extend_by_seconds: int = Field(0, description="soft close: such a bid moves the end to its time plus this "
                                                  "many seconds (at least 1 when extend_window_seconds is set)")
    hard_end_time: dt.datetime | None = Field(None, description="soft close: extensions never pass this; after "
                                                                "end_time")


class WeightIn(Schema):
    # The range is checked by accounts.services.weight_validate (the admin's words too).
    weight: float = Field(json_schema_extra={"minimum": 0, "maximum": MAX_WEIGHT})


@admin_router.post("/products", response={201: ProductOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut})
async def admin_product_create(request: HttpRequest, payload: ProductIn):
    product = await sync_to_async(services.product_create)(name=payload.name, description=payload.description)
    return HttpStatus(201, product)


@admin_router.post("/sessions", response={201: SessionOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut})
async def admin_session_create(request: HttpRequest, payload: SessionIn):
    def create():
        with acting_as(request.auth.id):
            session = services.session_create(**payload.dict(), created_by_id=request.auth.id)
        return selectors.session_as_dict(session)

    return HttpStatus(201, await sync_to_async(create)())


@admin_router.patch("/users/{uuid:user_id}", response={200: UserOut, 401: ErrorOut, 403: ErrorOut,
                                                       404: ErrorOut, 422: ErrorOut})
async def admin_user_update(request: HttpRequest, user_id: UUID, payload: WeightIn):
    def update():
        with acting_as(request.auth.id):
            return user_set_weight(user_id=str(user_id), weight=payload.weight)

    return await sync_to_async(update)()


@admin_router.post("/sessions/{uuid:session_id}/settle",
                   response={200: ResultsOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut,
                             503: ErrorOut})
def admin_session_settle(request: HttpRequest, session_id: UUID):
    """Settle now (instead of waiting for the next beat tick); 409 before the session's end."""
    settlement.session_settle(session_id=str(session_id))
    results = selectors.results_get(session_id=session_id)
    if results is None:  # another worker holds it right now
        raise ApplicationError(ErrorCode.NOT_SETTLED, "The session is being settled; try again shortly.")
    return json_response(results)


class ExportQuery(Schema):
    what: Literal["bids", "ranking"]


@admin_router.get("/sessions/{uuid:session_id}/export",
                  response={200: None, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
                  openapi_extra={"responses": {200: {"description": "CSV, header row first, streamed",
                                                     "content": {"text/csv": {}}}}})
def admin_session_export(request: HttpRequest, session_id: UUID, query: Query[ExportQuery]):
    """Every persisted bid (`bids`, seq order) or the settled ranking (`ranking`) as streamed CSV."""
    _refuse_unless_exists(session_id, settled=query.what == "ranking")
    rows = exports.ranking_csv(session_id) if query.what == "ranking" else exports.bids_csv(session_id)
    return StreamingHttpResponse(in_batches(rows), content_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="session-{session_id}-{query.what}.csv"'})


class AuditQuery(Schema):
    model: Literal["user", "session"]
    id: str = Field(max_length=64)


class ChangeOut(Schema):
    at: dt.datetime
    actor: str | None
    action: Literal["create", "update"]
    changes: dict[str, list]


@admin_router.get("/audit", response={200: list[ChangeOut], 401: ErrorOut, 403: ErrorOut, 422: ErrorOut})
def admin_audit(request: HttpRequest, query: Query[AuditQuery]):
    """Who changed what of one user (weight, is_admin, is_active) or session (its terms), newest first."""
    return json_response([asdict(change) for change in audit_trail(model=query.model, object_id=query.id)])
