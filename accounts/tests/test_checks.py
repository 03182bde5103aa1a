"""accounts.checks: `manage.py check` refuses an abuse-limit rate that `limits` cannot read."""

from accounts.checks import abuse_limit_rates


def test_readable_and_empty_rates_pass(settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = "50 per 15 minutes"
    settings.REGISTRATIONS_PER_ADDRESS = ""
    assert abuse_limit_rates(None) == []


def test_an_unreadable_rate_is_an_error_naming_the_setting(settings):
    settings.REGISTRATIONS_PER_ADDRESS = "lots"
    [error] = abuse_limit_rates(None)
    assert error.id == "accounts.E001" and "REGISTRATIONS_PER_ADDRESS" in error.msg
