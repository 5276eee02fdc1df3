"""Notification mails: every change of what signs a person in (password, phone, passkeys) is
told to her by mail, an independent channel (OWASP ASVS 5.0 6.3.7): what happened, when, from
which network, and what to do if it was not her. In her language, German first. Never a link:
a mail that signs in could be phished, and one that leads to a sign-in page teaches her to
follow such links.

A notification goes out once the change is committed (`after_commit`): a mail server that is
down must not undo a password reset, so its failure is logged, never raised."""

from collections.abc import Callable
from datetime import datetime

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from idp.accounts import users
from idp.accounts.models import User
from idp.errors import SendError
from idp.platform.i18n import local_time
from idp.platform.network import network_of
from idp.senders import Mail, send_mail

# What happened, by kind: the mail's subject and its first sentence.
CHANGES = {
    "password_reset": (
        _l("Your password for %(product)s was reset"),
        _l(
            "the password of your access to %(product)s was reset with the link from our e-mail "
            "and a PIN by SMS. Every sign-in that was open has ended."
        ),
    ),
    "password_changed": (
        _l("Your password for %(product)s was changed"),
        _l(
            "the password of your access to %(product)s was changed. Your other sign-ins have "
            "ended."
        ),
    ),
    "phone_changed": (
        _l("Your mobile number for %(product)s was changed"),
        _l(
            "the mobile number that receives your sign-in PINs for %(product)s was changed to "
            "%(phone)s."
        ),
    ),
    "passkey_added": (
        _l("A passkey was added to your access to %(product)s"),
        _l(
            "a passkey (%(passkey)s) was added to your access to %(product)s. It can confirm "
            "your sign-ins instead of the SMS PIN."
        ),
    ),
    "passkey_removed": (
        _l("A passkey was removed from your access to %(product)s"),
        _l("a passkey (%(passkey)s) was removed from your access to %(product)s."),
    ),
}


def message(user: User, change: str, *, now: datetime, ip: str | None, **details) -> Mail:
    """The notification mail of one change; `details` fill in what the kind names (phone,
    passkey)."""
    subject_text, what_text = CHANGES[change]
    product = current_app.config["PRODUCT_NAME"]
    with force_locale(users.language(user)):
        context = {
            "name": users.full_name(user),
            "username": user.username,
            "what": str(what_text) % {"product": product, **details},
            "when": local_time(now),
            # The network, not the address: enough to recognise one's own, no more.
            "network": network_of(ip) if ip else None,
            "by_operator": ip is None,
        }
        subject = str(subject_text) % {"product": product}
        text = render_template("mail/notification.txt", **context)
        html = render_template("mail/notification.html", **context)
    return Mail(to=user.email, subject=subject, text=text, html=html)


def after_commit(
    user: User, change: str, *, now: datetime, ip: str | None, **details
) -> Callable[[], None]:
    """The notification of a change, to send once it is committed (an AfterCommit action).
    The mail is made now, while the account is at hand; a failure to send it is logged."""
    mail = message(user, change, now=now, ip=ip, **details)
    logger = current_app.logger

    def send() -> None:
        try:
            send_mail(mail)
        except SendError as error:
            logger.warning("notification mail (%s) not sent: %s", change, error)

    return send
