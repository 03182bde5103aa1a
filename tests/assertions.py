"""What the API tests share: the contract's error-body assertion and the bid endpoint's URL."""


# The refusals whose body the contract extends: their price to win.
EXTRA_FIELDS = {"not_higher": {"price_to_win"}, "no_bid": {"price_to_win"}}


def assert_error(response, status: int, code: str) -> dict:
    """The response is a `status` with exactly the contract's {"detail", "code"} body (plus the
    fields the contract adds for `code`) and `code`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code"} | EXTRA_FIELDS.get(code, set()), body
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == code
    return body


def bids_url(session) -> str:
    return f"/api/sessions/{session.pk}/bids"
