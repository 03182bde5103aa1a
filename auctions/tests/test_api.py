"""The sessions API (auctions.api's router): the session list and detail, bid bodies and every
refusal of a bid (a 4xx with exactly {"detail", "code"}, never a 500), and results."""

import datetime as dt
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from tests.assertions import assert_error, bids_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(make_session):
    return make_session(upset_price="10.00")


# --- Listing and detail ----------------------------------------------------------------------

async def test_sessions_list_filters_by_status(api, make_session):
    active = await sync_to_async(make_session)()
    scheduled = await sync_to_async(make_session)(starts_in=3600)
    ended = await sync_to_async(make_session)(starts_in=-7200, lasts=60)
    for status, session in (("active", active), ("scheduled", scheduled), ("ended", ended)):
        listed = (await api.get(f"/api/sessions?status={status}")).json()
        assert [s["id"] for s in listed] == [str(session.pk)]
        assert listed[0]["status"] == status
    detail = (await api.get(f"/api/sessions/{active.pk}")).json()
    assert detail["upset_price"] == "10.00" and detail["product"]["name"] == active.product.name
    assert detail["start_time"].endswith("Z") and timezone.now() > dt.datetime.fromisoformat(detail["start_time"])


@pytest.mark.parametrize("query", ["status=bogus", "status=", "limit=0", "limit=501", "limit=abc"])
async def test_sessions_list_with_a_bad_query_is_invalid(api, query):
    assert_error(await api.get(f"/api/sessions?{query}"), 422, "invalid")


@pytest.mark.parametrize("suffix", ["", "/results"])
async def test_get_of_an_unknown_session_is_not_found(api, suffix):
    assert_error(await api.get(f"/api/sessions/{uuid.uuid4()}{suffix}"), 404, "not_found")


# --- Bodies ----------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    b"",
    b"price=20",
    b"{",
    b"[]",
    b"{}",
    b'{"price": null}',
    b'{"price": "abc"}',
    b'{"price": NaN}',
    b'{"price": Infinity}',
    b'{"price": -Infinity}',
    b'{"price": "NaN"}',
    b'{"price": "Infinity"}',
    b'{"price": "-Infinity"}',
    b'{"price": -1}',
    b'{"price": "-1"}',
    b'{"price": 0}',
    b'{"price": "0.00"}',
    b'{"price": 0.001}',
    b'{"price": "0.001"}',
    b'{"price": 1e12}',
    b'{"price": 1e400}',
    b'{"price": "1e12"}',
    b'{"price": "1000000000.01"}',
    b'{"price": true}',
    b'{"price": false}',
    b'{"price": [20]}',
    b'{"price": {"amount": 20}}',
    b'{"price": ""}',
    b'{"price": "  "}',
    b'{"price": "20,00"}',
    b'{"price": "0x14"}',
    b'{"price": "1' + b"0" * 100 + b'"}',
    b'{"price": 1' + b"0" * 5000 + b"}",
    b'"20.00"',
    b"20",
    b"null",
    b"\xff\xfe",
], ids=lambda content: content[:40].decode("latin-1"))
async def test_bid_with_a_malformed_body_is_rejected_as_invalid_price(api, session, bidder, auth_header, content):
    headers = {**auth_header(bidder), "Content-Type": "application/json"}
    response = await api.post(bids_url(session), content=content, headers=headers)
    assert_error(response, 422, "invalid_price")


async def test_bid_with_nan_price_is_rejected_as_invalid_price(api, session, bidder, auth_header):
    response = await api.post(bids_url(session), content=b'{"price": NaN}',
                              headers={**auth_header(bidder), "Content-Type": "application/json"})
    assert_error(response, 422, "invalid_price")


async def test_bid_with_a_one_megabyte_body_is_rejected_as_too_large(api, session, bidder, auth_header):
    content = b'{"price": "20.00", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = await api.post(bids_url(session), content=content,
                              headers={**auth_header(bidder), "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("price", ["10.00", 10, 10.5, "999999999.99", "1000000000", 1000000000])
async def test_bid_with_a_valid_price_is_accepted(api, session, bidder, auth_header, price):
    response = await api.post(bids_url(session), json={"price": price}, headers=auth_header(bidder))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("price,reason", [("  25.10 ", "spaces"), ("1e3", "exponent"), ("+51", "sign"),
                                          ("１２３", "digits 0-9"), ("99999999999999", "1,000,000,000")])
async def test_bid_with_a_price_string_that_is_not_plain_decimal_text_says_exactly_why(api, session, bidder,
                                                                                     auth_header, price, reason):
    response = await api.post(bids_url(session), json={"price": price}, headers=auth_header(bidder))
    assert_error(response, 422, "invalid_price")
    assert reason in response.json()["detail"]


# --- Session state ---------------------------------------------------------------------------

async def test_bid_on_an_unknown_session_is_not_found(api, bidder, auth_header):
    response = await api.post(f"/api/sessions/{uuid.uuid4()}/bids", json={"price": "20.00"},
                              headers=auth_header(bidder))
    assert_error(response, 404, "not_found")


async def test_repeated_bids_on_an_unknown_session_stay_not_found(api, bidder, auth_header):
    url = f"/api/sessions/{uuid.uuid4()}/bids"
    for price in ("20.00", "21.00"):
        assert_error(await api.post(url, json={"price": price}, headers=auth_header(bidder)), 404, "not_found")


@pytest.mark.parametrize("session_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_bid_on_a_malformed_session_id_is_not_found(api, bidder, auth_header, session_id):
    response = await api.post(f"/api/sessions/{session_id}/bids", json={"price": "20.00"},
                              headers=auth_header(bidder))
    assert_error(response, 404, "not_found")

@pytest.fixture
def scheduled_session(make_session):
    return make_session(starts_in=3600)


async def test_bid_before_the_start_is_rejected_as_not_started(api, scheduled_session, bidder, auth_header):
    session = scheduled_session
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(bidder))
    assert_error(response, 409, "session_not_started")


async def test_bid_after_the_end_is_rejected_as_ended(api, ended_session, bidder, auth_header):
    session = ended_session
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers=auth_header(bidder))
    assert_error(response, 409, "session_ended")


async def test_bid_below_the_upset_price_is_rejected(api, session, bidder, auth_header):
    response = await api.post(bids_url(session), json={"price": "9.99"}, headers=auth_header(bidder))
    assert_error(response, 422, "below_upset_price")


@pytest.mark.parametrize("second_price", ["20.00", "19.99", 20])
async def test_rebid_not_higher_than_own_previous_is_rejected(api, session, bidder, auth_header, second_price):
    headers = auth_header(bidder)
    assert (await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)).status_code == 201
    response = await api.post(bids_url(session), json={"price": second_price}, headers=headers)
    assert_error(response, 409, "not_higher")


async def test_eleventh_rapid_bid_by_one_bidder_is_rate_limited_with_retry_after(api, session, bidder,
                                                                                   auth_header):
    headers = auth_header(bidder)
    accepted = [await api.post(bids_url(session), json={"price": f"{20 + i}.00"}, headers=headers) for i in range(10)]
    assert [response.status_code for response in accepted] == [201] * 10
    response = await api.post(bids_url(session), json={"price": "99.00"}, headers=headers)
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
