"""What the senders carry, and the contract every sender keeps: `send(message)` delivers or
raises SendError (idp.errors), and never logs the message body (it carries links and PINs).
tests/test_senders.py runs one contract suite over every implementation."""

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class Sms:
    to: str  # E.164
    text: str


@dataclass(frozen=True)
class SmsReceipt:
    message_id: str | None = None
    # What the provider charged, in its currency (Vonage reports EUR), when it says.
    price: str | None = None
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Mailer(Protocol):
    def send(self, message: Mail) -> None: ...


@runtime_checkable
class SmsSender(Protocol):
    def send(self, message: Sms) -> SmsReceipt: ...
