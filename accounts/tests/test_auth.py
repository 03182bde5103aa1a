"""Bearer authentication of the API (accounts.auth, through the bid endpoint): a missing, malformed,
expired, forged or revoked token, or a token of no user, is 401 `not_authenticated`."""


import jwt
import pytest
from asgiref.sync import sync_to_async

from accounts.tokens import ALGORITHM, token_issue
from accounts.user_cache import local_clear
from tests.assertions import assert_error, bids_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(make_session):
    return make_session(upset_price="10.00")


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer ", "Basic x", "garbage", "Bearer garbage",
                                           "Bearer a.b.c", "Token abc"])
async def test_bid_without_a_valid_bearer_header_is_not_authenticated(api, session, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_an_expired_token_is_not_authenticated(api, session, bidder):
    token, _ = token_issue(user_id=str(bidder.pk), token_version=bidder.token_version, ttl_seconds=-10)
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_a_token_signed_by_another_key_is_not_authenticated(api, session, bidder):
    claims = {"sub": str(bidder.pk), "iat": 1, "exp": 4_000_000_000, "ver": bidder.token_version}
    forged = jwt.encode(claims, "not-the-server-key-" * 4, algorithm=ALGORITHM)
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_an_unsigned_none_algorithm_token_is_not_authenticated(api, session, bidder):
    claims = {"sub": str(bidder.pk), "iat": 1, "exp": 4_000_000_000, "ver": bidder.token_version}
    unsigned = jwt.encode(claims, None, algorithm="none")
    response = await api.post(bids_url(session), json={"price": "20.00"},
                              headers={"Authorization": f"Bearer {unsigned}"})
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize("subject", ["not-a-uuid", "3f1c2b7e-5d4a-4c3b-8a29-1e0f6d7c8b9a"])  # no such user
async def test_bid_with_a_token_for_no_such_user_is_not_authenticated(api, session, subject):
    token, _ = token_issue(user_id=subject, token_version=0)
    response = await api.post(bids_url(session), json={"price": "20.00"}, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "not_authenticated")


async def test_bid_with_a_token_issued_before_a_password_change_is_not_authenticated(api, session, bidder,
                                                                                      token_for):
    headers = {"Authorization": f"Bearer {token_for(bidder)}"}
    assert (await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)).status_code == 201

    def change_password():
        bidder.set_password("another-pass-456")
        bidder.save()

    await sync_to_async(change_password)()
    local_clear()  # the in-process auth cache's TTL has run out
    response = await api.post(bids_url(session), json={"price": "30.00"}, headers=headers)
    assert_error(response, 401, "not_authenticated")


async def test_bid_by_a_deactivated_user_is_not_authenticated(api, session, bidder, auth_header):
    headers = auth_header(bidder)
    assert (await api.post(bids_url(session), json={"price": "20.00"}, headers=headers)).status_code == 201

    def deactivate():
        bidder.is_active = False
        bidder.save()

    await sync_to_async(deactivate)()
    local_clear()
    response = await api.post(bids_url(session), json={"price": "30.00"}, headers=headers)
    assert_error(response, 401, "not_authenticated")
