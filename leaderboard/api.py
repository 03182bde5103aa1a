"""Leaderboard API: board pages with ETag/304, the tiny meta poll target, my standing."""

import datetime as dt
from decimal import Decimal
from typing import Literal
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema

from accounts.auth import user_auth
from core.exceptions import ErrorOut
from core.json import json_response
from core.routes import redis_only
from leaderboard import selectors

router = Router(tags=["leaderboard"])

Status = Literal["scheduled", "active", "ended", "settled"]


class EntryOut(Schema):
    rank: int
    user_id: UUID
    username: str
    price: Decimal
    score: float
    is_winner: bool


class LeaderboardOut(Schema):
    session_id: UUID
    status: Status
    version: int
    inventory: int
    total_bidders: int
    threshold_score: float | None
    highest_price: Decimal | None
    page: int
    page_size: int
    total_pages: int
    entries: list[EntryOut]


class MetaOut(Schema):
    version: int
    status: Status
    total_bidders: int
    threshold_score: float | None
    highest_price: Decimal | None
    end_time: dt.datetime
    server_time: dt.datetime


class MyBidOut(Schema):
    price: Decimal
    score: float
    rank: int
    is_winning: bool
    price_to_win: Decimal | None = Field(description="the lowest price that would be winning now; null while "
                                                     "winning or when the session takes no bids")


class NoBidOut(ErrorOut):
    price_to_win: Decimal | None = Field(None, description="with `no_bid`: the lowest price that would be winning "
                                                           "now (absent for `not_found`)")


class PageQuery(Schema):
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(50, ge=1, le=settings.LEADERBOARD_MAX_PAGE_SIZE)


@router.get(redis_only("/sessions/{uuid:session_id}/leaderboard"),
            response={200: LeaderboardOut, 304: None, 404: ErrorOut, 422: ErrorOut})
async def leaderboard(request: HttpRequest, session_id: UUID, query: Query[PageQuery]):
    board = await selectors.leaderboard_page(session_id=session_id, page=query.page, page_size=query.page_size)
    etag = f'"{board["version"]}-{board["status"]}-{query.page}-{query.page_size}"'
    if etag in request.headers.get("If-None-Match", ""):
        return HttpResponse(status=304, headers={"ETag": etag})
    return json_response(board, headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.get(redis_only("/sessions/{uuid:session_id}/leaderboard/meta"), response={200: MetaOut, 404: ErrorOut})
async def leaderboard_meta(request: HttpRequest, session_id: UUID):
    meta = await selectors.leaderboard_meta(session_id=session_id)
    return json_response(meta, headers={"Cache-Control": f"max-age={int(settings.LEADERBOARD_META_CACHE_SECONDS)}"})


@router.get(redis_only("/sessions/{uuid:session_id}/bids/me"), response={200: MyBidOut, 401: ErrorOut, 404: NoBidOut},
            auth=user_auth)
async def my_bid(request: HttpRequest, session_id: UUID):
    return json_response(await selectors.my_bid(session_id=session_id, user=request.auth))
