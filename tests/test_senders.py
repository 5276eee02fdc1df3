"""The senders on real parts: aiosmtpd over STARTTLS and implicit TLS, the vonage SDK against an
HTTPS fake of Vonage's SMS API. One contract for every implementation, then the whole journey
through the real ones, and what a failing SMS or SMTP server leaves behind (nothing)."""

import json
import logging
import re
from pathlib import Path

import pytest

from idp.accounts.models import Invitation, User
from idp.audit.models import AuditEvent
from idp.authn.factors.sms.models import PinChallenge
from idp.authn.models import AuthTransaction, Session, TransactionState
from idp.errors import ConfigurationError, SendError, SendUnconfirmed
from idp.platform.extensions import db
from idp.senders import Mail, Sms
from idp.senders.messages import Mailer, SmsSender
from tests.conftest import PASSWORD, csrf_token, path_of, post_form

SECRET_IN_BODY = "https://localhost/activate/secret-link-7Qx9"
PIN_IN_BODY = "Ihre PIN: 493817\n\n@localhost #493817"

# --- One contract for every sender ----------------------------------------------------------


SMTP_FIXTURES = {"starttls": "smtp_server", "implicit": "smtps_server", "auth": "smtp_auth_server"}


def smtp_mail(request, make_app, mode):
    server = request.getfixturevalue(SMTP_FIXTURES[mode])
    certificates = request.getfixturevalue("certificates")
    app = make_app(**server.settings(certificates.ca_file))

    def delivered():
        assert all(server.mailbox.encrypted)
        return [
            (m["To"], m["Subject"], m.get_body(("plain",)).get_content())
            for m in server.mailbox.messages
        ]

    return app, delivered


def console_mail(request, make_app):
    capsys = request.getfixturevalue("capsys")
    app = make_app(MAIL_BACKEND="console")

    def delivered():
        err = capsys.readouterr().err
        assert "DEVELOPMENT MAIL BACKEND" in err  # says loudly what it is
        return [("anna@example.com", "Betreff", SECRET_IN_BODY)] if SECRET_IN_BODY in err else []

    return app, delivered


def file_mail(request, make_app):
    app = make_app(MAIL_BACKEND="file")

    def delivered():
        files = sorted(Path(app.config["OUTBOX_DIR"]).glob("*-mail-*.json"))
        records = [json.loads(f.read_text()) for f in files]
        return [(r["to"], r["subject"], r["text"]) for r in records]

    return app, delivered


MAIL_SENDERS = {
    "smtp-starttls": lambda request, make_app: smtp_mail(request, make_app, "starttls"),
    "smtp-implicit-tls": lambda request, make_app: smtp_mail(request, make_app, "implicit"),
    "smtp-starttls-auth": lambda request, make_app: smtp_mail(request, make_app, "auth"),
    "console": console_mail,
    "file": file_mail,
}


@pytest.mark.parametrize("backend", list(MAIL_SENDERS))
def test_mail_sender_contract_delivers_without_logging_the_body(backend, request, make_app, caplog):
    app, delivered = MAIL_SENDERS[backend](request, make_app)
    assert isinstance(app.extensions["idp.mailer"], Mailer)
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        result = app.extensions["idp.mailer"].send(
            Mail(
                to="anna@example.com",
                subject="Betreff",
                text=f"Hallo Anna, Ihr Link: {SECRET_IN_BODY}",
                html=f"<html><body><a href='{SECRET_IN_BODY}'>Link</a></body></html>",
            )
        )
    assert result is None
    [(to, subject, text)] = delivered()
    assert to == "anna@example.com" and subject == "Betreff"
    assert SECRET_IN_BODY in text
    assert "secret-link" not in caplog.text


def unreachable_smtp(make_app, certificates):
    from idp.demo.servers import free_port
    from tests.servers import HOST

    return make_app(
        MAIL_BACKEND="smtp",
        MAIL_SERVER=HOST,
        MAIL_PORT=free_port(),
        MAIL_TIMEOUT=2,
        MAIL_CA_FILE=str(certificates.ca_file),
    )


def untrusted_smtp(make_app, smtp_server, certificates):
    # The server's certificate is not from a CA the system trusts: STARTTLS must refuse it.
    settings = smtp_server.settings(certificates.ca_file)
    settings["MAIL_CA_FILE"] = None
    return make_app(**settings)


def rejecting_smtp(make_app, smtp_server, certificates):
    smtp_server.mailbox.fail_with = "554 5.7.1 Message rejected"
    return make_app(**smtp_server.settings(certificates.ca_file))


def wrong_smtp_password(make_app, smtp_auth_server, certificates):
    settings = smtp_auth_server.settings(certificates.ca_file)
    settings["MAIL_PASSWORD"] = "not the submission password"
    return make_app(**settings)


def unwritable_file_outbox(make_app, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return make_app(MAIL_BACKEND="file", OUTBOX_DIR=str(blocker / "outbox"))


@pytest.mark.parametrize(
    "broken",
    [
        "unreachable_smtp",
        "untrusted_smtp",
        "rejecting_smtp",
        "wrong_smtp_password",
        "unwritable_file_outbox",
    ],
)
def test_mail_sender_contract_failure_is_a_send_error_without_the_body(
    broken, request, make_app, certificates, tmp_path, caplog
):
    if broken == "unreachable_smtp":
        app = unreachable_smtp(make_app, certificates)
    elif broken == "unwritable_file_outbox":
        app = unwritable_file_outbox(make_app, tmp_path)
    elif broken == "wrong_smtp_password":
        server = request.getfixturevalue("smtp_auth_server")
        app = wrong_smtp_password(make_app, server, certificates)
    else:
        server = request.getfixturevalue("smtp_server")
        app = globals()[broken](make_app, server, certificates)
    caplog.set_level(logging.DEBUG)
    with app.app_context(), pytest.raises(SendError) as raised:
        app.extensions["idp.mailer"].send(
            Mail(to="anna@example.com", subject="Betreff", text=SECRET_IN_BODY)
        )
    assert "secret-link" not in str(raised.value)
    assert "secret-link" not in caplog.text
    assert "submission password" not in str(raised.value) + caplog.text
    if broken == "untrusted_smtp":
        assert request.getfixturevalue("smtp_server").mailbox.messages == []
    if broken == "wrong_smtp_password":
        assert request.getfixturevalue("smtp_auth_server").mailbox.messages == []


def test_smtp_login_happens_over_tls_with_the_configured_name(
    make_app, smtp_auth_server, certificates, caplog
):
    from tests.servers import SMTP_PASSWORD, SMTP_USERNAME

    app = make_app(**smtp_auth_server.settings(certificates.ca_file))
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        app.extensions["idp.mailer"].send(Mail(to="anna@example.com", subject="S", text="T"))
    [(name, _mechanism, encrypted)] = smtp_auth_server.authenticator.attempts
    assert (name, encrypted) == (SMTP_USERNAME, True)
    assert len(smtp_auth_server.mailbox.messages) == 1
    assert SMTP_PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("configured", "name"),
    [
        ("e:service <no-reply@example.com>", "e:service"),
        ("ecotel, Kundenservice <no-reply@example.com>", "ecotel, Kundenservice"),
        ('Der "Service" <no-reply@example.com>', 'Der "Service"'),
        ('"e:service" <no-reply@example.com>', "e:service"),
        ("Kundenbetreuung Größe & Söhne <no-reply@example.com>", "Kundenbetreuung Größe & Söhne"),
        ("no-reply@example.com", ""),
    ],
)
def test_the_sender_is_one_mailbox_whatever_its_name(
    configured, name, make_app, smtp_server, certificates
):
    # Written raw, "e:service <...>" is an RFC 5322 group named "e" with no mailbox in it.
    settings = smtp_server.settings(certificates.ca_file) | {"MAIL_DEFAULT_SENDER": configured}
    app = make_app(**settings)
    with app.app_context():
        app.extensions["idp.mailer"].send(Mail(to="anna@example.com", subject="S", text="T"))
    [message] = smtp_server.mailbox.messages
    [group] = message["From"].groups
    assert group.display_name is None
    assert [(a.display_name, a.addr_spec) for a in group.addresses] == [
        (name, "no-reply@example.com")
    ]
    assert [a.addr_spec for a in message["To"].addresses] == ["anna@example.com"]
    assert message["From"].defects == () and message["To"].defects == ()
    assert message["Date"].datetime is not None and message["Message-ID"]
    assert smtp_server.mailbox.envelopes[0] == ("no-reply@example.com", ["anna@example.com"])


@pytest.mark.parametrize("configured", ["e:service", "e:service <no-reply>", "a <b@c> d"])
def test_a_sender_that_is_no_mailbox_is_refused_at_start(
    configured, make_app, smtp_server, certificates
):
    settings = smtp_server.settings(certificates.ca_file) | {"MAIL_DEFAULT_SENDER": configured}
    with pytest.raises(ConfigurationError, match="IDP_MAIL_DEFAULT_SENDER"):
        make_app(**settings)


def vonage_sms(request, make_app):
    server = request.getfixturevalue("vonage")
    app = make_app(**server.settings())

    def delivered():
        return [(r["to"], r["text"]) for r in server.state.received]

    return app, delivered


def console_sms(request, make_app):
    capsys = request.getfixturevalue("capsys")
    app = make_app(SMS_BACKEND="console")

    def delivered():
        err = capsys.readouterr().err
        assert "DEVELOPMENT SMS BACKEND" in err
        return [("4915112345678", PIN_IN_BODY)] if PIN_IN_BODY in err else []

    return app, delivered


def file_sms(request, make_app):
    app = make_app(SMS_BACKEND="file")

    def delivered():
        files = sorted(Path(app.config["OUTBOX_DIR"]).glob("*-sms-*.json"))
        return [
            (r["to"].lstrip("+"), r["text"]) for r in (json.loads(f.read_text()) for f in files)
        ]

    return app, delivered


SMS_SENDERS = {"vonage": vonage_sms, "console": console_sms, "file": file_sms}


@pytest.mark.parametrize("backend", list(SMS_SENDERS))
def test_sms_sender_contract_delivers_without_logging_the_body(backend, request, make_app, caplog):
    app, delivered = SMS_SENDERS[backend](request, make_app)
    assert isinstance(app.extensions["idp.sms"], SmsSender)
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        receipt = app.extensions["idp.sms"].send(Sms(to="+4915112345678", text=PIN_IN_BODY))
    assert delivered() == [("4915112345678", PIN_IN_BODY)]
    assert "493817" not in caplog.text
    if backend == "vonage":
        assert receipt.price == "0.0333" and receipt.message_id
        request_seen = request.getfixturevalue("vonage").state.received[0]
        assert request_seen["from"] == "ecotel"
        assert "testsecret" not in caplog.text


@pytest.mark.parametrize("mode", ["2", "9", "http500", "hang"])
def test_vonage_failure_is_a_send_error_without_the_body(mode, vonage, make_app, caplog):
    vonage.state.mode = mode
    app = make_app(**vonage.settings())
    caplog.set_level(logging.DEBUG)
    with app.app_context(), pytest.raises(SendError) as raised:
        app.extensions["idp.sms"].send(Sms(to="+4915112345678", text=PIN_IN_BODY))
    assert "493817" not in str(raised.value)
    assert "493817" not in caplog.text
    assert "testsecret" not in caplog.text + str(raised.value)
    # No retry: a retried POST could deliver (and bill) the PIN twice.
    assert len(vonage.state.received) == 1
    if mode == "hang":
        # SMS_TIMEOUT ended the wait, not the fake giving up: the SMS may yet be delivered.
        assert isinstance(raised.value, SendUnconfirmed)
        assert "no answer in 1 s" in str(raised.value)


def test_vonage_with_an_untrusted_certificate_is_a_send_error(vonage, make_app, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    app = make_app(**vonage.settings())
    with app.app_context(), pytest.raises(SendError):
        app.extensions["idp.sms"].send(Sms(to="+4915112345678", text=PIN_IN_BODY))
    assert vonage.state.received == []


def test_file_sms_failure_is_a_send_error(make_app, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    app = make_app(SMS_BACKEND="file", OUTBOX_DIR=str(blocker / "outbox"))
    with app.app_context(), pytest.raises(SendError):
        app.extensions["idp.sms"].send(Sms(to="+4915112345678", text=PIN_IN_BODY))


# --- The journey through the real senders ----------------------------------------------------


def invite_anna(app):
    return app.test_cli_runner().invoke(
        args=["users", "invite", "anna", "--email", "anna@example.com", "--phone", "+4915112345678"]
    )


def newest_pin(vonage) -> str:
    match = re.search(r"#(\d{6})$", vonage.state.received[-1]["text"])
    assert match, "no PIN in the newest SMS"
    return match.group(1)


def activation_link(smtp_server) -> str:
    message = smtp_server.mailbox.messages[-1]
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"https?://\S+/activate/\S+", text)
    assert match, text
    return match.group(0)


def test_journey_through_smtp_and_vonage(real_senders_app, smtp_server, vonage, caplog):
    caplog.set_level(logging.DEBUG)
    app = real_senders_app
    client = app.test_client()
    result = invite_anna(app)
    assert result.exit_code == 0, result.output
    assert "/activate/" not in result.output

    [message] = smtp_server.mailbox.messages
    assert smtp_server.mailbox.envelopes[0][1] == ["anna@example.com"]
    assert message["To"] == "anna@example.com"
    assert message["Subject"] == "Ihr Zugang zu e:service"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Ihr Benutzername: anna" in text and "Passwort" in text
    assert app.config["PORTAL_URL"] in text
    link = activation_link(smtp_server)
    assert link.startswith(app.config["ISSUER"] + "/activate/")
    assert link in html.replace("&amp;", "&")

    page = client.get(path_of(link))
    assert page.status_code == 200
    response = post_form(
        client, path_of(link), {"password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert response.status_code == 303
    [sms] = vonage.state.received
    assert sms["to"] == "4915112345678"
    assert sms["authorization"].startswith("Basic ")
    with app.app_context():
        assert db.session.scalar(db.select(User)).password_hash is None

    done = post_form(client, "/pin", {"pin": newest_pin(vonage)})
    assert done.status_code == 200
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert user.state == "active" and user.password_hash
    assert client.get(path_of(link)).status_code == 410

    response = post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 303
    assert len(vonage.state.received) == 2
    response = post_form(client, "/pin", {"pin": newest_pin(vonage)})
    assert response.status_code == 303
    home = client.get("/")
    assert home.status_code == 200 and "anna" in home.text
    with app.app_context():
        [session] = db.session.scalars(db.select(Session)).all()
        assert session.amr == ["pwd", "sms", "mfa"]
    # Neither the link nor any PIN nor the API secret ever reached a log.
    secrets = [link.rsplit("/", 1)[1], PASSWORD, "testsecret"]
    secrets += [re.search(r"#(\d{6})$", r["text"]).group(1) for r in vonage.state.received]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert [s for s in secrets if s in logged] == []


def nothing_pending(app) -> None:
    with app.app_context():
        pending = db.session.scalars(
            db.select(AuthTransaction).where(AuthTransaction.state == TransactionState.PENDING)
        ).all()
        assert pending == []
        assert db.session.scalars(db.select(PinChallenge)).all() == []
        assert db.session.scalars(db.select(Session)).all() == []


# Vonage's refusals and errors. One that takes the SMS and does not answer in time is no
# failure: the SMS may still come (tests/test_faults_sms.py).
SMS_FAILURES = ["2", "9", "http500"]


@pytest.mark.parametrize("mode", SMS_FAILURES)
def test_failing_sms_at_activation_leaves_nothing_half_done(
    mode, real_senders_app, smtp_server, vonage
):
    app = real_senders_app
    client = app.test_client()
    assert invite_anna(app).exit_code == 0
    link = path_of(activation_link(smtp_server))
    vonage.state.mode = mode
    page = client.get(link, headers={"Accept-Language": "en"})
    response = client.post(
        link,
        data={
            "csrf_token": csrf_token(page.text),
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
        headers={"Accept-Language": "en"},
    )
    assert response.status_code == 503
    assert "The SMS could not be sent" in response.text
    nothing_pending(app)
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert user.password_hash is None and user.state == "invited"
        assert db.session.scalar(db.select(Invitation)).state in ("sent", "opened")
    # The link still works: once the SMS gets through, the activation completes.
    vonage.reset()
    response = post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert response.status_code == 303
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 200


@pytest.mark.parametrize("mode", SMS_FAILURES)
def test_failing_sms_at_login_leaves_nothing_half_done(mode, real_senders_app, smtp_server, vonage):
    app = real_senders_app
    client = app.test_client()
    assert invite_anna(app).exit_code == 0
    link = path_of(activation_link(smtp_server))
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    post_form(client, "/pin", {"pin": newest_pin(vonage)})
    with app.app_context():
        db.session.execute(db.delete(PinChallenge))
        db.session.commit()

    vonage.state.mode = mode
    page = client.get("/login", headers={"Accept-Language": "en"})
    response = client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD},
        headers={"Accept-Language": "en"},
    )
    assert response.status_code == 503
    assert "The SMS could not be sent" in response.text
    nothing_pending(app)
    # No PIN page for a login whose PIN never left.
    assert client.get("/pin").status_code == 410


def test_failing_sms_at_resend_keeps_the_attempt_as_it_was(
    real_senders_app, smtp_server, vonage, frozen_clock
):
    app = real_senders_app
    client = app.test_client()
    assert invite_anna(app).exit_code == 0
    link = path_of(activation_link(smtp_server))
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    first_pin = newest_pin(vonage)
    frozen_clock.advance(seconds=61)
    vonage.state.mode = "9"
    response = post_form(client, "/pin", {"resend": "1"}, headers={"Accept-Language": "en"})
    assert response.status_code == 503
    assert "The SMS could not be sent" in response.text
    with app.app_context():
        assert len(db.session.scalars(db.select(PinChallenge)).all()) == 1
        assert db.session.scalar(db.select(AuthTransaction)).pins_sent == 1
    # The PIN that did arrive still counts.
    assert post_form(client, "/pin", {"pin": first_pin}).status_code == 200


@pytest.mark.parametrize("failure", ["rejected", "unreachable"])
def test_failing_smtp_at_invite_changes_nothing(failure, make_app, smtp_server, certificates):
    settings = smtp_server.settings(certificates.ca_file)
    if failure == "rejected":
        smtp_server.mailbox.fail_with = "554 5.7.1 Message rejected"
    else:
        from idp.demo.servers import free_port

        settings["MAIL_PORT"] = free_port()
    app = make_app(**settings)
    result = invite_anna(app)
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "/activate/" not in result.stderr + result.stdout
    with app.app_context():
        assert db.session.scalars(db.select(User)).all() == []
        assert db.session.scalars(db.select(Invitation)).all() == []
        assert db.session.scalars(db.select(AuditEvent)).all() == []


@pytest.mark.parametrize("command", ["resend-invite", "reset-password"])
def test_failing_smtp_keeps_the_old_link(command, make_app, smtp_server, certificates):
    app = make_app(**smtp_server.settings(certificates.ca_file))
    assert invite_anna(app).exit_code == 0
    link = path_of(activation_link(smtp_server))
    smtp_server.mailbox.fail_with = "451 4.3.0 Try again later"
    result = app.test_cli_runner().invoke(args=["users", command, "anna"])
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    with app.app_context():
        assert [i.state for i in db.session.scalars(db.select(Invitation))] == ["sent"]
    assert app.test_client().get(link).status_code == 200
