"""Notification mails: a change of what signs the person in reaches her by mail, in her
language, with when and from which network, and with no link at all."""

import re

from idp.accounts import notifications
from idp.errors import SendError
from idp.platform import clock
from tests.conftest import activate, csrf_token, invite, path_of, post_form

NEW_PASSWORD = "a brand new passphrase, long enough"


def ok(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result


def assert_no_link(mail: dict) -> None:
    assert not re.search(r"https?://", mail["text"]), mail["text"]
    assert "href" not in (mail.get("html") or "")


def test_an_operators_phone_change_is_told_by_mail_without_a_link(app, client, outbox):
    activate(app, client, outbox)
    ok(app, "users", "set-phone", "anna", "+4915198765432")

    mail = outbox.mails()[0]
    assert mail["to"] == "anna@example.com"
    assert mail["subject"] == "Ihre Mobilnummer für e:service wurde geändert"
    assert "+49\u00a0…\u00a032" in mail["text"]  # masked: enough to recognise
    assert "Durch: ecotel" in mail["text"] and "Wann:" in mail["text"]
    assert_no_link(mail)


def test_a_password_reset_is_told_by_mail_with_the_network(app, client, outbox):
    activate(app, client, outbox)
    ok(app, "users", "reset-password", "anna")
    link = path_of(outbox.last_link())
    post_form(client, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    page = client.get("/pin")
    done = client.post("/pin", data={"csrf_token": csrf_token(page.text), "pin": outbox.last_pin()})
    assert done.status_code == 200

    mail = outbox.mails()[0]
    assert mail["subject"] == "Ihr Passwort für e:service wurde zurückgesetzt"
    assert "Aus dem Netz: 127.0.0.0/24" in mail["text"]
    assert_no_link(mail)


def test_the_notification_speaks_the_accounts_language(app, outbox):
    invite(app, username="bob")
    with app.app_context():
        from idp.accounts import users
        from idp.platform.extensions import db

        user = users.find_by_username("bob")
        user.locale = "en"
        db.session.commit()
        mail = notifications.message(user, "password_changed", now=clock.now(), ip="192.0.2.7")
    assert mail.subject == "Your password for e:service was changed"
    assert "From the network: 192.0.2.0/24" in mail.text


def test_a_mail_server_that_fails_does_not_undo_the_change(app, client, outbox, monkeypatch):
    activate(app, client, outbox)

    def refuse(_mail):
        raise SendError("smtp down")

    monkeypatch.setattr(notifications, "send_mail", refuse)
    ok(app, "users", "set-phone", "anna", "+4915198765432")
    with app.app_context():
        from idp.accounts import users

        assert users.find_by_username("anna").phone == "+4915198765432"
