"""Mail and SMS senders, chosen by name from the configuration (IDP_MAIL_BACKEND,
IDP_SMS_BACKEND). Every implementation keeps one contract: `send(message)` delivers or raises
SendError, and never logs the message body (it carries links and PINs)."""

from dataclasses import dataclass, field

from flask import Flask, current_app


class SendError(RuntimeError):
    """The message could not be handed over; nothing about it may be assumed delivered."""


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


def init_senders(app: Flask) -> None:
    from idp.senders import mail, sms

    app.extensions["idp.mailer"] = mail.build(app.config)
    app.extensions["idp.sms"] = sms.build(app.config)


def send_mail(message: Mail) -> None:
    current_app.extensions["idp.mailer"].send(message)


def send_sms(message: Sms) -> SmsReceipt:
    return current_app.extensions["idp.sms"].send(message)
