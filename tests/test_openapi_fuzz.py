"""Property run of the public and bid endpoints against their own OpenAPI document (schemathesis):
generated valid and invalid requests never get a 5xx, and every answer matches the documented
status codes, media types and body schemas."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Everything a bidder or an anonymous visitor can call; the admin endpoints have their own tests.
PUBLIC_AND_BID_PATHS = r"^/api/(auth/|sessions)"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
EXAMPLES_PER_OPERATION_AND_MODE = 35


@pytest.fixture
def schema():
    from flashbid.asgi import application

    return schemathesis.openapi.from_asgi("/api/openapi.json", application).include(path_regex=PUBLIC_AND_BID_PATHS)


@pytest.fixture
def fuzz_limits(settings):
    # Let generated bids, logins and registrations reach the rules behind the rate limits (all read per
    # request; an empty rate is no limit).
    settings.BID_RATE_LIMIT_PER_SECOND = 1_000_000
    settings.LOGIN_FAILURES_PER_ADDRESS = settings.LOGIN_FAILURES_PER_NAME_AND_ADDRESS = ""
    settings.REGISTRATIONS_PER_ADDRESS = ""


def operations(schema) -> list:
    """Writes first, so the reads (my bid, the board) also see a session with bids; logout last, since
    it revokes the bidder's token."""
    found = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in found}
    assert {"POST /api/auth/register", "POST /api/auth/login", "POST /api/auth/password", "POST /api/auth/logout",
            "POST /api/sessions/{session_id}/bids", "GET /api/sessions/{session_id}/leaderboard"} <= labels, labels
    return sorted(found, key=lambda op: (op.label == "POST /api/auth/logout", op.method.upper() != "POST"))


# Bodies the schema alone would rarely produce, so that positive cases get past validation to the rules.
PRICES = st.decimals(min_value="0.01", max_value="1000000000", places=2)
USERNAMES = st.from_regex(r"[a-z][a-z0-9_]{2,30}", fullmatch=True)


def realistic_bodies(operation, *, username: str, password: str):
    if operation.label == "POST /api/sessions/{session_id}/bids":
        return st.one_of(PRICES.map(lambda price: {"price": str(price)}),
                         PRICES.map(lambda price: {"price": float(price)}))
    if operation.label == "POST /api/auth/register":
        return USERNAMES.map(lambda name: {"username": name, "email": f"{name}@example.test",
                                           "password": "a-long-pass-9876"})
    if operation.label == "POST /api/auth/login":
        return st.sampled_from([{"username": username, "password": password},
                                {"username": username, "password": "wrong-pass-9876"}])
    return None


def case_strategy(operation, mode: GenerationMode, *, session_ids: list[str], username: str, password: str):
    """Cases for `operation`: generated from the schema, plus (positive mode) realistic bodies; where it
    takes a session id, half of them aim at real sessions."""
    takes_session = any(p.name == "session_id" for p in operation.path_parameters)
    targets = [{}] + ([{"session_id": session_id} for session_id in session_ids] if takes_session else [])

    def cases(path_parameters: dict):
        generated = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)
        bodies = realistic_bodies(operation, username=username, password=password)
        if mode is GenerationMode.NEGATIVE or bodies is None:
            return generated
        return st.one_of(generated, bodies.flatmap(
            lambda body: operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None,
                                               body=body)))

    random_ids = cases(targets[0])
    if not takes_session:
        return random_ids
    return st.one_of(random_ids, st.one_of(*(cases(target) for target in targets[1:])))


def test_public_and_bid_endpoints_conform_to_their_openapi_document(schema, fuzz_limits, make_user, make_session,
                                                                    auth_header):
    password = "s3cret-pass-123"
    bidder = make_user(password=password)
    headers = auth_header(bidder)
    sessions = [make_session(upset_price="1.00"), make_session(starts_in=3600), make_session(starts_in=-120, lasts=60)]
    session_ids = [str(session.pk) for session in sessions]

    for operation in operations(schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES_PER_OPERATION_AND_MODE, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=case_strategy(operation, mode, session_ids=session_ids, username=bidder.username,
                                      password=password))
            def call(case):
                case.call_and_validate(headers=headers, checks=CHECKS)

            call()
