"""SMS pumping defences, checked before the provider is called: countries, number types,
caps per number and per account, and the global hourly budget with its circuit breaker."""

import pytest
from limits.storage import MemoryStorage

from idp.senders.sms_guard import SmsGuard, SmsRefused, number_problem

MOBILE_DE = "+4915112345678"


def make_guard(**overrides) -> SmsGuard:
    settings = {
        "storage": MemoryStorage(),
        "allowed_countries": ["DE", "AT", "CH"],
        "per_number": "3 per day",
        "per_account": "4 per day",
        "budget_messages": "5 per hour",
        "budget_cost_eur": 0.10,
    }
    settings.update(overrides)
    return SmsGuard(**settings)


@pytest.mark.parametrize(
    ("phone", "problem"),
    [
        (MOBILE_DE, None),
        ("+43664123456", None),
        ("+41791234567", None),
        ("+493012345678", "number_type"),  # Berlin landline
        ("+491805123456", "number_type"),  # shared-cost service number
        ("+12025550123", "country"),
        ("+447911123456", "country"),
        ("not a number", "number_type"),
    ],
)
def test_only_mobile_numbers_of_allowed_countries(phone, problem):
    assert number_problem(phone, ["DE", "AT", "CH"]) == problem


def test_cap_per_number(app):
    guard = make_guard()
    with app.app_context():
        for account in ("a", "b", "c"):
            guard.reserve(MOBILE_DE, account)
        with pytest.raises(SmsRefused) as refused:
            guard.reserve(MOBILE_DE, "d")
    assert refused.value.reason == "number_daily"


def test_cap_per_account(app):
    guard = make_guard(per_number="100 per day")
    with app.app_context():
        for number in ("+4915112345671", "+4915112345672", "+4915112345673", "+4915112345674"):
            guard.reserve(number, "anna")
        with pytest.raises(SmsRefused) as refused:
            guard.reserve("+4915112345675", "anna")
    assert refused.value.reason == "account_daily"


def test_global_message_budget_stops_all_sending(app, caplog):
    guard = make_guard(per_number="100 per day", per_account="100 per day")
    with app.app_context():
        for index in range(5):
            guard.reserve(f"+491511234567{index}", f"user{index}")
        with pytest.raises(SmsRefused) as refused:
            guard.reserve("+4915112345679", "someone-else")
    assert refused.value.reason == "budget"
    assert "SMS budget exceeded" in caplog.text


def test_money_budget_opens_the_circuit_breaker(app):
    guard = make_guard(
        per_number="100 per day", per_account="100 per day", budget_messages="100 per hour"
    )
    with app.app_context():
        guard.reserve(MOBILE_DE, "anna")
        guard.record_cost("0.0600")
        guard.reserve(MOBILE_DE, "anna")
        guard.record_cost("0.0600")  # 0.12 EUR > 0.10 EUR per hour
        with pytest.raises(SmsRefused) as refused:
            guard.reserve(MOBILE_DE, "anna")
    assert refused.value.reason == "budget"


def test_refused_number_does_not_use_the_global_budget(app):
    guard = make_guard(
        per_number="1 per day", per_account="100 per day", budget_messages="2 per hour"
    )
    with app.app_context():
        guard.reserve(MOBILE_DE, "anna")
        for _ in range(5):
            with pytest.raises(SmsRefused):
                guard.reserve(MOBILE_DE, "anna")
        guard.reserve("+4915112345670", "bert")


def test_an_account_past_its_cap_no_longer_counts_against_another_persons_number(app):
    """Phone changes to someone else's number, refused once the account's own cap is used up,
    must not go on using up that number's day: her own PINs would stop."""
    guard = make_guard(
        per_number="5 per day", per_account="3 per day", per_account_to_new_numbers="100 per day"
    )
    victim = "+4915112345679"
    with app.app_context():
        for _ in range(3):
            guard.reserve(victim, "mallory", new_number=True)
        for _ in range(10):
            with pytest.raises(SmsRefused) as refused:
                guard.reserve(victim, "mallory", new_number=True)
            assert refused.value.reason == "account_daily"
        for _ in range(2):  # what is left of her number's day is hers
            guard.reserve(victim, "victim")


def test_sms_to_numbers_not_yet_the_accounts_own_have_a_cap_of_their_own(app):
    guard = make_guard(
        per_number="100 per day", per_account="100 per day", per_account_to_new_numbers="2 per day"
    )
    with app.app_context():
        guard.reserve("+4915112345671", "anna", new_number=True)
        guard.reserve("+4915112345672", "anna", new_number=True)
        with pytest.raises(SmsRefused) as refused:
            guard.reserve("+4915112345673", "anna", new_number=True)
        assert refused.value.reason == "new_numbers_daily"
        guard.reserve(MOBILE_DE, "anna")  # her own number: only the other caps
