"""Defences against SMS pumping (toll fraud), checked before any SMS reaches the provider:
allowed countries and number types, daily caps per number and per account, and a global hourly
budget in messages and in money whose breach stops all sending (a circuit breaker) and alerts.

Counters live in the rate-limit storage (Redis when IDP_REDIS_URL is set), so that every
worker and host shares them."""

from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers
from flask import current_app
from limits import parse
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from idp.errors import SendError

MOBILE_TYPES = (
    phonenumbers.PhoneNumberType.MOBILE,
    # Countries whose numbering cannot tell mobile from fixed lines (none in DACH).
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
)
# Money is counted in hundredths of a cent: the limits library counts whole numbers.
COST_UNITS_PER_EUR = 10_000


class SmsRefused(SendError):
    """No SMS may go to this number now. `reason` is one of: country, number_type,
    number_daily, account_daily, new_numbers_daily, budget."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def number_problem(phone: str, allowed_countries: list[str]) -> str | None:
    """Why a number may not receive PINs ('country', 'number_type'), or None."""
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "number_type"
    if phonenumbers.region_code_for_number(parsed) not in allowed_countries:
        return "country"
    if phonenumbers.number_type(parsed) not in MOBILE_TYPES:
        return "number_type"
    return None


@dataclass(frozen=True)
class CapUse:
    """How much of one daily cap is used, and when its count starts again (None: unused)."""

    limit: str
    sent: int
    reached: bool
    resets_at: datetime | None


@dataclass
class SmsGuard:
    storage: Storage
    allowed_countries: list[str]
    per_number: str
    per_account: str
    budget_messages: str
    budget_cost_eur: float
    # SMS an account may send to a number not (yet) its own: the new number of a phone change.
    per_account_to_new_numbers: str = "8 per day"

    @classmethod
    def from_config(cls, config, storage: Storage) -> "SmsGuard":
        return cls(
            storage=storage,
            allowed_countries=list(config["SMS_ALLOWED_COUNTRIES"]),
            per_number=config["SMS_LIMIT_PER_NUMBER"],
            per_account=config["SMS_LIMIT_PER_ACCOUNT"],
            budget_messages=config["SMS_BUDGET_MESSAGES"],
            budget_cost_eur=float(config["SMS_BUDGET_EUR_PER_HOUR"]),
            per_account_to_new_numbers=config["SMS_LIMIT_TO_NEW_NUMBERS_PER_ACCOUNT"],
        )

    @property
    def limiter(self) -> FixedWindowRateLimiter:
        return FixedWindowRateLimiter(self.storage)

    def _cost_window(self):
        return parse(f"{int(self.budget_cost_eur * COST_UNITS_PER_EUR)} per hour")

    def reserve(self, phone: str, account: str, *, new_number: bool = False) -> None:
        """Counts one SMS against every cap, or raises SmsRefused without sending. Each
        counter is incremented atomically in the storage, so parallel requests cannot share
        one remaining SMS. `new_number`: the number is not the account's own yet (a phone
        change proving its new number), under a cap of its own as well."""
        try:
            self._reserve(phone, account, new_number)
        except SmsRefused as refused:
            from idp.platform import metrics

            metrics.SMS_REFUSED.labels(reason=refused.reason).inc()
            raise

    def _reserve(self, phone: str, account: str, new_number: bool) -> None:
        problem = number_problem(phone, self.allowed_countries)
        if problem:
            raise SmsRefused(problem)
        limiter = self.limiter
        if not limiter.test(self._cost_window(), "sms-cost"):
            self._alert("cost")
            raise SmsRefused("budget")
        # Personal caps first: a refused number must not use up the global budget. The
        # account's caps before the number's: an account that has used up its own may not go on
        # counting against someone else's number (phone changes to her number, each refused,
        # would otherwise use up her day's PINs and lock her out of every sign-in).
        if new_number and not limiter.hit(
            parse(self.per_account_to_new_numbers), "sms-new-number", account
        ):
            raise SmsRefused("new_numbers_daily")
        if not limiter.hit(parse(self.per_account), *self._account_key(account)):
            raise SmsRefused("account_daily")
        if not limiter.hit(parse(self.per_number), *self._number_key(phone)):
            raise SmsRefused("number_daily")
        if not limiter.hit(parse(self.budget_messages), "sms-global"):
            self._alert("messages")
            raise SmsRefused("budget")

    @staticmethod
    def _number_key(phone: str) -> tuple[str, str]:
        return "sms-number", phone

    @staticmethod
    def _account_key(account: str) -> tuple[str, str]:
        return "sms-account", account

    def _personal_caps(self, phone: str, account: str) -> dict:
        return {
            "account": (self.per_account, self._account_key(account)),
            "number": (self.per_number, self._number_key(phone)),
        }

    def personal_caps(self, phone: str, account: str) -> dict[str, CapUse]:
        """The daily caps of the account and of its number ("account", "number"): for support."""
        used = {}
        for name, (limit_text, key) in self._personal_caps(phone, account).items():
            limit = parse(limit_text)
            reset, remaining = self.limiter.get_window_stats(limit, *key)
            sent = limit.amount - remaining
            used[name] = CapUse(
                limit=limit_text,
                sent=sent,
                reached=remaining <= 0,
                resets_at=datetime.fromtimestamp(reset, UTC) if sent else None,
            )
        return used

    def lift_personal_caps(self, phone: str, account: str) -> None:
        """Starts the day's counts of the account and of its number again (support)."""
        for limit_text, key in self._personal_caps(phone, account).values():
            self.limiter.clear(parse(limit_text), *key)

    def record_cost(self, price_eur: str | None) -> None:
        """Adds what the provider charged for one SMS to the hourly money budget."""
        if not price_eur:
            return
        try:
            units = round(float(price_eur) * COST_UNITS_PER_EUR)
        except ValueError:
            return
        if units > 0:
            self.limiter.hit(self._cost_window(), "sms-cost", cost=units)

    def _alert(self, budget: str) -> None:
        from idp.platform import metrics

        metrics.SMS_BUDGET_EXCEEDED.labels(budget=budget).inc()
        current_app.logger.error(
            "SMS budget exceeded (%s per hour): sending stopped until the window resets", budget
        )


def guard() -> SmsGuard:
    return current_app.extensions["idp.sms_guard"]
