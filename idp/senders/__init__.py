"""Mail and SMS senders, chosen by name from the configuration (IDP_MAIL_BACKEND,
IDP_SMS_BACKEND): smtp and vonage for production, console and file for development. What they
carry and the contract they keep are in idp.senders.messages."""

from flask import Flask, current_app

from idp.senders import mail, sms
from idp.senders.messages import Mail, Mailer, Sms, SmsReceipt, SmsSender

__all__ = ["Mail", "Sms", "SmsReceipt", "init_senders", "send_mail", "send_sms"]


def init_senders(app: Flask) -> None:
    mailer: Mailer = mail.build(app.config)
    sms_sender: SmsSender = sms.build(app.config)
    app.extensions["idp.mailer"] = mailer
    app.extensions["idp.sms"] = sms_sender


def send_mail(message: Mail) -> None:
    current_app.extensions["idp.mailer"].send(message)


def send_sms(message: Sms) -> SmsReceipt:
    return current_app.extensions["idp.sms"].send(message)
