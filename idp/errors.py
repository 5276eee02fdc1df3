"""The domain's errors, which more than one capability raises or answers: each says in its
message what went wrong in words for the person or operator who reads it, never a secret.
They import nothing of the project, so any layer can raise or catch them."""

from datetime import datetime


class UserError(ValueError):
    """Input an operator or a provisioning client must correct; the message says how."""


class UsernameTaken(UserError):
    """The username belongs to an account already."""


class ConfigurationError(RuntimeError):
    """The configuration cannot run safely; the message says which setting to fix."""


class SendError(RuntimeError):
    """The message could not be handed over; nothing about it may be assumed delivered."""


class SendUnconfirmed(SendError):
    """The provider has the message but did not answer in time: it may still be delivered,
    and billed, later. `when_answered(fn)` has fn called with the receipt (in another thread)
    if the provider accepts it after all."""

    def __init__(self, message: str, when_answered):
        super().__init__(message)
        self.when_answered = when_answered


class HashingBusy(Exception):
    """Every argon2 slot stayed taken for ARGON2_WAIT_SECONDS: answered with 503 and
    Retry-After; nothing it was about is written (see login.check_password)."""


class PinsLocked(Exception):
    """Wrong PINs locked the account: no PIN is sent or compared before `until`."""

    def __init__(self, until: datetime):
        super().__init__(f"PIN entry locked until {until.isoformat()}")
        self.until = until


class LinkProblem(Exception):
    """Why a link cannot be used: 'invalid', 'expired' or 'used'."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LoginThrottled(Exception):
    """The name has used up its password attempts from this network: none is checked before
    `until`. Raised for every name alike, known or not, so that it tells nothing about it."""

    def __init__(self, until: datetime):
        super().__init__(f"no password attempt before {until.isoformat()}")
        self.until = until
