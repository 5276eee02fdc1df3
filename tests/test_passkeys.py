"""Passkeys without a browser: the server's WebAuthn checks with answers that a software
authenticator makes (tests/webauthn_authenticator.py). Registration after a fresh password +
PIN, a login with password + passkey and no SMS, the SMS on the same page, and every answer
that must be refused (wrong origin, wrong RP ID, another account's passkey, a replay, a
counter going backwards, no user verification) changes nothing. With the default policy no
passkey appears anywhere."""

import html
import json
import re

import pytest
from sqlalchemy import func, select

from idp.accounts.models import User
from idp.audit.models import AuditEvent
from idp.authn.factors.passkey.models import Passkey
from idp.authn.models import Session
from idp.platform import metrics
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, csrf_token, login, post_form
from tests.webauthn_authenticator import SoftAuthenticator

ALLOW = {"SECOND_FACTORS": ["sms", "passkey"]}


@pytest.fixture
def passkey_app(make_app):
    return make_app(**ALLOW)


@pytest.fixture
def signed_in(passkey_app, outbox):
    client = passkey_app.test_client()
    activate(passkey_app, client, outbox)
    login(client, outbox)
    return client


def options_of(page_text: str) -> dict:
    found = re.search(
        r'<script type="application/json" id="passkey-options">(.*?)</script>', page_text, re.S
    )
    assert found, page_text
    return json.loads(html.unescape(found.group(1)))


def register(client, authenticator, name="Laptop", **kw):
    page = client.get("/account/passkeys")
    credential = authenticator.register(options_of(page.text), **kw)
    return client.post(
        "/account/passkeys",
        data={
            "csrf_token": csrf_token(page.text),
            "register": "1",
            "name": name,
            "credential": credential,
        },
    )


def password_step(client, username="anna"):
    response = post_form(client, "/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 303, response.text
    return response


def passkey_answer(client, authenticator, **kw):
    page = client.get("/login/passkey")
    assert page.status_code == 200, page.text
    credential = authenticator.sign(options_of(page.text), **kw)
    return client.post(
        "/login/passkey",
        data={"csrf_token": csrf_token(page.text), "passkey": "1", "credential": credential},
    )


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def events(name: str) -> int:
    return db.session.scalar(select(func.count()).where(AuditEvent.event == name))


def test_register_then_log_in_with_the_passkey_and_no_sms(passkey_app, signed_in, outbox):
    authenticator = SoftAuthenticator("localhost", "http://localhost")
    response = register(signed_in, authenticator)
    assert response.status_code == 303, response.text
    page = signed_in.get("/account/passkeys")
    assert "Laptop" in page.text and 'name="remove"' in page.text
    assert any(
        "passkey" in mail["subject"].lower() or "Passkey" in mail["subject"]
        for mail in outbox.mails()
    )

    client = passkey_app.test_client()
    sms_before = len(outbox.sms())
    saved_before = metrics.SMS_SAVED._value.get()
    step = password_step(client)
    assert step.headers["Location"].endswith("/login/passkey")
    page = client.get("/login/passkey")
    options = options_of(page.text)
    assert [c["id"] for c in options["allowCredentials"]] == [
        json.loads(authenticator.register({"challenge": "x"}))["id"]
    ]
    assert options["userVerification"] == "required" and options["rpId"] == "localhost"
    assert 'name="sms"' in page.text
    response = client.post(
        "/login/passkey",
        data={
            "csrf_token": csrf_token(page.text),
            "passkey": "1",
            "credential": authenticator.sign(options),
        },
    )
    assert response.status_code == 303, response.text
    assert len(outbox.sms()) == sms_before  # no SMS
    assert metrics.SMS_SAVED._value.get() == saved_before + 1
    with passkey_app.app_context():
        newest = db.session.scalars(select(Session).order_by(Session.id.desc())).first()
        assert newest.amr == ["pwd", "hwk", "mfa"]
        assert db.session.scalar(select(Passkey.last_used_at)) is not None


def test_a_synced_passkey_says_swk(passkey_app, signed_in):
    authenticator = SoftAuthenticator("localhost", "http://localhost", synced=True)
    assert register(signed_in, authenticator).status_code == 303
    client = passkey_app.test_client()
    password_step(client)
    assert passkey_answer(client, authenticator).status_code == 303
    with passkey_app.app_context():
        newest = db.session.scalars(select(Session).order_by(Session.id.desc())).first()
        assert newest.amr == ["pwd", "swk", "mfa"]
        assert db.session.scalar(select(Passkey.backup_eligible)) is True


def test_the_sms_on_the_passkey_page_switches_to_the_pin(
    passkey_app, signed_in, outbox, frozen_clock
):
    register(signed_in, SoftAuthenticator("localhost", "http://localhost"))
    frozen_clock.advance(seconds=120)  # past the PIN cooldown of the first login
    client = passkey_app.test_client()
    password_step(client)
    sms_before = len(outbox.sms())
    page = client.get("/login/passkey")
    response = client.post("/login/passkey", data={"csrf_token": csrf_token(page.text), "sms": "1"})
    assert response.headers["Location"].endswith("/pin")
    assert len(outbox.sms()) == sms_before + 1
    response = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert response.status_code == 303
    # The passkey step is over: signed in now, its page leads on to the account.
    again = client.get("/login/passkey")
    assert again.status_code == 302 and again.headers["Location"] == "/account"
    with passkey_app.app_context():
        newest = db.session.scalars(select(Session).order_by(Session.id.desc())).first()
        assert newest.amr == ["pwd", "sms", "mfa"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"origin": "http://evil.example"}, "invalid"),
        ({"rp_id": "evil.example"}, "invalid"),
        ({"uv": False}, "invalid"),
    ],
)
def test_a_registration_with_a_wrong_answer_is_refused(signed_in, passkey_app, answer, reason):
    response = register(signed_in, SoftAuthenticator("localhost", "http://localhost"), **answer)
    assert response.status_code == 422
    with passkey_app.app_context():
        assert count(Passkey) == 0


def test_registration_needs_a_fresh_login_with_the_pin(passkey_app, signed_in, frozen_clock):
    frozen_clock.advance(seconds=301)
    page = signed_in.get("/account/passkeys")
    assert "passkey-options" not in page.text
    response = signed_in.post(
        "/account/passkeys", data={"csrf_token": csrf_token(page.text), "register": "1"}
    )
    assert response.status_code == 303
    assert "/login?next=/account/passkeys" in response.headers["Location"]


@pytest.mark.parametrize(
    "answer",
    [
        {"origin": "http://evil.example"},
        {"rp_id": "evil.example"},
        {"uv": False},
        {"counter": 0},  # the counter went backwards: a cloned authenticator
    ],
    ids=["wrong-origin", "wrong-rp-id", "no-user-verification", "counter-backwards"],
)
def test_a_login_with_a_wrong_answer_is_refused_and_changes_nothing(passkey_app, signed_in, answer):
    authenticator = SoftAuthenticator("localhost", "http://localhost")
    register(signed_in, authenticator)
    client = passkey_app.test_client()
    password_step(client)
    with passkey_app.app_context():
        sessions_before = count(Session)
        counter_before = db.session.scalar(select(Passkey.sign_count))
    response = passkey_answer(client, authenticator, **answer)
    assert response.status_code == 422
    with passkey_app.app_context():
        assert count(Session) == sessions_before
        assert db.session.scalar(select(Passkey.sign_count)) == counter_before
        assert db.session.scalar(select(Passkey.last_used_at)) is None
        assert events("passkey.refused") == 1
        if "counter" in answer:
            detail = db.session.scalars(
                select(AuditEvent).where(AuditEvent.event == "passkey.refused")
            ).one()
            assert "counter" in json.dumps(detail.details)


def test_failed_passkey_answers_lock_the_account_like_wrong_pins(passkey_app, signed_in):
    """A stolen password plus a stream of forged answers must not get unlimited tries: each
    refused answer counts toward the account's PIN lock, over all its open logins."""
    authenticator = SoftAuthenticator("localhost", "http://localhost")
    register(signed_in, authenticator)
    threshold = passkey_app.config["LOCKOUT_THRESHOLD"]
    client = passkey_app.test_client()
    password_step(client)
    for _ in range(threshold - 1):
        assert (
            passkey_answer(client, authenticator, origin="http://evil.example").status_code == 422
        )
    ended = passkey_answer(client, authenticator, origin="http://evil.example")
    assert ended.status_code == 410, ended.text
    assert "zu oft nicht bestätigt" in ended.text
    with passkey_app.app_context():
        user = db.session.scalar(select(User).where(User.username == "anna"))
        assert user.failed_pins == threshold and user.pins_locked_until is not None
        sessions_before = count(Session)
    # A new login waits for the lock like after wrong PINs: it gets no passkey step at all.
    other = passkey_app.test_client()
    locked = post_form(other, "/login", {"username": "anna", "password": PASSWORD})
    assert locked.status_code == 429 and "Location" not in locked.headers
    with passkey_app.app_context():
        assert count(Session) == sessions_before


def test_a_passkey_login_clears_the_failures_before_it(passkey_app, signed_in):
    authenticator = SoftAuthenticator("localhost", "http://localhost")
    register(signed_in, authenticator)
    client = passkey_app.test_client()
    password_step(client)
    assert passkey_answer(client, authenticator, uv=False).status_code == 422
    assert passkey_answer(client, authenticator).status_code == 303
    with passkey_app.app_context():
        assert db.session.scalar(select(User.failed_pins).where(User.username == "anna")) == 0


def test_a_replayed_answer_is_refused(passkey_app, signed_in):
    authenticator = SoftAuthenticator("localhost", "http://localhost")
    register(signed_in, authenticator)
    client = passkey_app.test_client()
    password_step(client)
    page = client.get("/login/passkey")
    credential = authenticator.sign(options_of(page.text))
    form = {"csrf_token": csrf_token(page.text), "passkey": "1", "credential": credential}
    assert client.post("/login/passkey", data=form).status_code == 303
    # The same answer in a new login (a captured one, replayed): its challenge was used, and
    # belonged to the other login's transaction.
    other = passkey_app.test_client()
    password_step(other)
    page = other.get("/login/passkey")
    with passkey_app.app_context():
        sessions_before = count(Session)
    replay = {**form, "csrf_token": csrf_token(page.text)}
    assert other.post("/login/passkey", data=replay).status_code == 422
    with passkey_app.app_context():
        assert count(Session) == sessions_before


def test_another_accounts_passkey_is_refused(passkey_app, signed_in, outbox):
    annas = SoftAuthenticator("localhost", "http://localhost")
    register(signed_in, annas)
    bert = passkey_app.test_client()
    activate(passkey_app, bert, outbox, username="bert")
    login(bert, outbox, username="bert")
    berts = SoftAuthenticator("localhost", "http://localhost")
    register(bert, berts)

    client = passkey_app.test_client()
    password_step(client, "bert")
    page = client.get("/login/passkey")
    options = options_of(page.text)
    assert len(options["allowCredentials"]) == 1  # bert's own only
    response = client.post(
        "/login/passkey",
        data={
            "csrf_token": csrf_token(page.text),
            "passkey": "1",
            "credential": annas.sign(options),
        },
    )
    assert response.status_code == 422


def test_remove_needs_the_fresh_step_and_then_the_pin_comes_back(passkey_app, signed_in, outbox):
    register(signed_in, SoftAuthenticator("localhost", "http://localhost"))
    page = signed_in.get("/account/passkeys")
    passkey_id = re.search(r'name="remove" value="(\d+)"', page.text).group(1)
    response = signed_in.post(
        "/account/passkeys", data={"csrf_token": csrf_token(page.text), "remove": passkey_id}
    )
    assert response.status_code == 303
    with passkey_app.app_context():
        assert count(Passkey) == 0
        assert events("passkey.removed") == 1 and events("passkey.added") == 1
    client = passkey_app.test_client()
    assert password_step(client).headers["Location"].endswith("/pin")


def test_with_the_default_policy_no_passkey_appears_anywhere(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    assert client.get("/account/passkeys").status_code == 404
    assert client.get("/login/passkey").status_code == 404
    assert "passkey" not in client.get("/").text.lower()
    discovery = client.get("/.well-known/openid-configuration").json
    assert "passkey" not in json.dumps(discovery)


def test_operators_list_and_remove_passkeys(passkey_app, signed_in, outbox):
    register(signed_in, SoftAuthenticator("localhost", "http://localhost"), name="Phone")
    register(signed_in, SoftAuthenticator("localhost", "http://localhost"), name="Key")
    runner = passkey_app.test_cli_runner()
    shown = json.loads(runner.invoke(args=["users", "show", "anna"]).output)
    assert [p["name"] for p in shown["passkeys"]] == ["Phone", "Key"]
    mails_before = len(outbox.mails())

    one = runner.invoke(
        args=["users", "passkeys", "remove", "anna", str(shown["passkeys"][0]["id"])]
    )
    assert one.exit_code == 0, one.output
    assert [
        p["name"]
        for p in json.loads(runner.invoke(args=["users", "show", "anna"]).output)["passkeys"]
    ] == ["Key"]
    rest = runner.invoke(args=["users", "passkeys", "remove", "anna"])
    assert rest.exit_code == 0, rest.output
    assert runner.invoke(args=["users", "passkeys", "remove", "anna", "999"]).exit_code != 0
    with passkey_app.app_context():
        assert count(Passkey) == 0
        assert events("passkey.removed") == 2
    assert len(outbox.mails()) == mails_before + 2


def test_id_token_and_step_up_with_the_passkey_at_a_relying_party(make_app, app, outbox):
    from urllib.parse import urljoin

    import requests

    from idp.demo.servers import free_port
    from tests.oidc_fixtures import HOST, RelyingParty, serving

    def allow(live):
        live.config["SECOND_FACTORS"] = ["sms", "passkey"]

    with serving(make_app, allow) as idp:
        client = idp.app.test_client()
        activate(idp.app, client, outbox)
        login(client, outbox)
        authenticator = SoftAuthenticator(HOST, idp.issuer)
        assert register(client, authenticator).status_code == 303
        redirect_uri = f"http://{HOST}:{free_port()}/callback"
        created = idp.create_client(redirect_uri=redirect_uri)
        rp = RelyingParty(idp, created["client_id"], created["client_secret"], redirect_uri)
        http = requests.Session()

        def sign_in(**params):
            response = http.get(rp.authorization_url(**params), timeout=10)
            assert "/login" in response.url, response.url
            next_path = re.search(r'name="next" value="([^"]+)"', response.text).group(1)
            form = {
                "csrf_token": csrf_token(response.text),
                "username": "anna",
                "password": PASSWORD,
                "next": html.unescape(next_path),
            }
            step = http.post(idp.url("/login"), data=form, allow_redirects=False, timeout=10)
            assert step.headers["Location"].endswith("/login/passkey")
            page = http.get(idp.url("/login/passkey"), timeout=10)
            answer = http.post(
                idp.url("/login/passkey"),
                data={
                    "csrf_token": csrf_token(page.text),
                    "passkey": "1",
                    "credential": authenticator.sign(options_of(page.text)),
                },
                allow_redirects=False,
                timeout=10,
            )
            while answer.is_redirect:
                target = urljoin(answer.url, answer.headers["Location"])
                if target.startswith(redirect_uri):
                    return rp.verify_id_token(rp.redeem(target)["id_token"])
                answer = http.get(target, allow_redirects=False, timeout=10)
            raise AssertionError(answer.text)

        sms_before = len(outbox.sms())
        first = sign_in()
        assert first["amr"] == ["pwd", "hwk", "mfa"]
        assert first["acr"] == "https://refeds.org/profile/mfa"
        again = sign_in(prompt="login")
        assert again["amr"] == ["pwd", "hwk", "mfa"]
        assert again["auth_time"] >= first["auth_time"]
        assert len(outbox.sms()) == sms_before


def test_discovery_lists_the_passkey_methods_only_when_passkeys_are_allowed(passkey_app, app):
    def amr_values(application):
        document = application.test_client().get("/.well-known/openid-configuration").json
        return document["amr_values_supported"]

    assert amr_values(passkey_app) == ["pwd", "sms", "hwk", "swk", "mfa"]
    assert amr_values(app) == ["pwd", "sms", "mfa"]
