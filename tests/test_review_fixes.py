"""Findings of the security review, each pinned by a test that fails without its fix:

M2  a password reset ends the tokens of the old password and tells the relying parties;
L2  no mail is sent while the audit chain head is locked;
L8  a new e-mail address kills the set-password link mailed to the old one;
L9  an unexpected error does not log the activation link's token."""

import logging

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from scim2_models import PatchOp, PatchOperation
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

import idp.accounts.invitations as invitations_module
from idp.accounts import invitations, provisioning
from idp.audit.models import AuditEvent
from idp.platform.extensions import db
from tests.conftest import invite, path_of, post_form
from tests.scim_fixtures import new_user, stored_user

NEW_PASSWORD = "a completely different passphrase 42"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


# --- M2: a password reset ends tokens and sends back-channel logouts ---------------------------


def test_password_reset_revokes_tokens_and_sends_backchannel_logout(
    idp, browser, make_rp, backchannel, outbox
):
    rp = make_rp("--backchannel-logout-uri", backchannel.uri)
    token = rp.sign_in(browser)
    assert token["refresh_token"]
    sid = rp.verify_id_token(token["id_token"])["sid"]

    result = idp.app.test_cli_runner().invoke(args=["users", "reset-password", "anna"])
    assert result.exit_code == 0, result.output
    person = idp.app.test_client()
    link = path_of(outbox.last_link())
    response = post_form(person, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert response.status_code == 303, response.text
    assert post_form(person, "/pin", {"pin": outbox.last_pin()}).status_code == 200

    keys = KeySet.import_key_set(requests.get(idp.url("/jwks.json"), timeout=5).json())
    claims = jwt.decode(backchannel.wait(), keys, algorithms=["ES256"]).claims
    assert claims["aud"] == rp.client_id and claims["sid"] == sid
    assert EVENT in claims["events"]

    refresh = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    userinfo = requests.get(
        idp.url("/userinfo"),
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert userinfo.status_code == 401


# --- L2: the mail goes out before the audit chain head is locked -------------------------------


@pytest.fixture
def mail_moments(monkeypatch):
    """Wraps the mail sender: notes, at the moment each mail leaves, the audit events that the
    sending transaction sees and whether another connection can lock the chain head."""
    moments = []
    original = invitations_module.send_mail

    def observed(mail):
        seen = db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()
        head_free = True
        with db.engine.connect() as other:
            if other.dialect.name == "postgresql":
                other.execute(text("SET LOCAL lock_timeout = '200ms'"))
                try:
                    other.execute(text("SELECT 1 FROM audit_chain_head FOR UPDATE"))
                except OperationalError:  # the lock timeout: the head is held
                    head_free = False
                other.rollback()
        moments.append((mail.to, seen, head_free))
        return original(mail)

    monkeypatch.setattr(invitations_module, "send_mail", observed)
    return moments


def test_cli_mails_are_sent_before_the_audit_event(app, outbox, mail_moments):
    invite(app)
    result = app.test_cli_runner().invoke(args=["users", "reset-password", "anna"])
    assert result.exit_code == 0, result.output
    assert mail_moments == [
        ("anna@example.com", [], True),
        ("anna@example.com", ["user.invited"], True),
    ]
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()
    assert events == ["user.invited", "password.reset_requested"]
    assert len(outbox.mails()) == 2


def test_provisioning_mail_is_sent_before_the_audit_event(idp, ordering, outbox, mail_moments):
    created = ordering.scim.create(new_user(ordering))
    assert created.id
    [(to, seen, head_free)] = mail_moments
    assert to == "anna@example.com" and head_free
    assert "user.provisioned" not in seen
    assert len(outbox.mails()) == 1
    with idp.app.app_context():
        events = db.session.scalars(select(AuditEvent.event)).all()
    assert events.count("user.provisioned") == 1


# --- L8: a new e-mail address kills the open set-password link ---------------------------------


def _patch(ordering, subject: str, path: str, value):
    User = ordering.User
    operation = PatchOperation[User](op=PatchOperation.Op.replace_, path=path, value=value)
    return ordering.scim.modify(User, subject, PatchOp[User](operations=[operation]))


def test_changing_the_email_revokes_the_open_set_password_link(idp, ordering, outbox):
    created = ordering.scim.create(new_user(ordering))
    link = path_of(outbox.last_link())
    person = idp.app.test_client()

    # Other changes leave the link alone.
    _patch(ordering, created.id, "displayName", "Anna Schmidt")
    assert person.get(link).status_code == 200

    _patch(ordering, created.id, "emails", [{"value": "anna.new@example.com", "primary": True}])
    assert stored_user(idp, subject=created.id).email == "anna.new@example.com"
    assert person.get(link).status_code == 410
    form = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    response = post_form(person, link, form, page_url="/login")
    assert response.status_code == 410


# --- L9: no link token in the log of an unexpected error ---------------------------------------


def test_unexpected_error_on_activation_link_logs_no_token(
    app, client, outbox, monkeypatch, caplog
):
    invite(app)
    link = path_of(outbox.last_link())
    token = link.rsplit("/", 1)[1]

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(invitations, "resolve", broken)
    caplog.set_level(logging.ERROR)
    assert client.get(link).status_code == 500
    lines = [record for record in caplog.records if "unhandled error" in record.getMessage()]
    assert lines, "the unexpected error was not logged"
    assert "/activate/[redacted]" in lines[0].getMessage()
    assert token not in caplog.text


def test_unexpected_scim_error_logs_the_redacted_path(idp, ordering, monkeypatch, caplog):
    created = ordering.scim.create(new_user(ordering))

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(provisioning, "replace", broken)
    caplog.set_level(logging.ERROR)
    response = ordering.http.put(
        f"/Users/{created.id}",
        json=ordering.user_payload(),
        headers={"Content-Type": "application/scim+json"},
    )
    assert response.status_code == 500
    lines = [record for record in caplog.records if "unhandled error" in record.getMessage()]
    assert lines, "the unexpected error was not logged"
    assert "/scim/v2/Users/[redacted]" in lines[0].getMessage()
    assert created.id not in caplog.text
