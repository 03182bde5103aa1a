"""What the API tests share: the contract's error-body assertion and the bid endpoint's URL."""


def assert_error(response, status: int, code: str) -> dict:
    """The response is a `status` with exactly the contract's {"detail", "code"} body and `code`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == code
    return body


def bids_url(session) -> str:
    return f"/api/sessions/{session.pk}/bids"
