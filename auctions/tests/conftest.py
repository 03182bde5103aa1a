import pytest


@pytest.fixture
def bidder(make_user):
    return make_user()


@pytest.fixture
def users(make_user):
    def make(n: int, **kwargs):
        return [make_user(**kwargs) for _ in range(n)]

    return make


@pytest.fixture
def ended_session(make_session):
    return make_session(starts_in=-120, lasts=60)
