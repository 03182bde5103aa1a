import pytest
from django.db.backends import utils as db_utils


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


@pytest.fixture
def executed_sql(monkeypatch):
    """Every SQL statement any thread of this process runs from here on (clear it to start over)."""
    executed = []
    original = db_utils.CursorWrapper._execute_with_wrappers

    def counting(self, sql, *args, **kwargs):
        executed.append(sql)
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute_with_wrappers", counting)
    return executed
