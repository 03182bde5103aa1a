import pytest


@pytest.fixture
def bidder(make_user):
    return make_user()
