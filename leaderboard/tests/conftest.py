import logging

import pytest


@pytest.fixture(autouse=True)
def _broadcaster_logs_no_error(caplog):
    """A broadcaster that fails and retries can still deliver in time; these tests want it clean."""
    caplog.set_level(logging.WARNING, logger="leaderboard")
    yield
    problems = [r for r in caplog.get_records("call")
                if r.name.startswith("leaderboard") and r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]
