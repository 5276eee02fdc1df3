"""The seed journey: invitation, password confirmed by SMS PIN, login with a mandatory PIN."""

import re

from idp.accounts.models import Invitation, User
from tests.conftest import PASSWORD, activate, csrf_token, invite, login, path_of, post_form


def test_invitation_mail_names_username_link_and_portal_in_german(app, outbox):
    result = invite(app)
    mail = outbox.mails()[0]
    assert mail["to"] == "anna@example.com"
    assert mail["subject"] == "Ihr Zugang zu e:service"
    assert "Ihr Benutzername: anna" in mail["text"]
    assert outbox.last_link().startswith(app.config["ISSUER"] + "/activate/")
    assert app.config["PORTAL_URL"] in mail["text"]
    assert "<html" in mail["html"]
    # The command never prints the link.
    assert "/activate/" not in result.output


def test_opening_the_link_never_consumes_it(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    for _ in range(3):
        page = client.get(link)
        assert page.status_code == 200
        assert 'autocomplete="new-password"' in page.text
    assert page.text.count('autocomplete="new-password"') == 2


def test_activation_with_pin_activates_and_kills_the_link(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    response = post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert response.status_code == 303
    with app.app_context():
        user = User.query.filter_by(username_key="anna").one()
        # The password takes effect only after the PIN.
        assert user.password_hash is None and user.state == "invited"
    sms = outbox.sms()[0]
    assert sms["to"] == "+4915112345678"
    done = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert done.status_code == 200
    assert app.config["PORTAL_URL"] in done.text
    with app.app_context():
        user = User.query.filter_by(username_key="anna").one()
        assert user.state == "active" and user.password_hash
        assert Invitation.query.one().state == "activated"
    assert client.get(link).status_code == 410


def test_wrong_pin_keeps_password_unset(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    wrong = "000000" if outbox.last_pin() != "000000" else "111111"
    response = post_form(client, "/pin", {"pin": wrong})
    assert response.status_code == 422
    assert "Verbleibende Versuche: 4" in response.text
    with app.app_context():
        assert User.query.one().password_hash is None


def test_policy_violation_shows_form_again_and_sends_no_sms(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    response = post_form(client, link, {"password": "short", "password_confirm": "short"})
    assert response.status_code == 422
    assert "mindestens 12 Zeichen" in response.text
    assert outbox.sms() == []


def test_login_needs_password_and_pin(app, client, outbox):
    activate(app, client, outbox)
    response = post_form(client, "/login", {"username": "Anna", "password": PASSWORD})
    assert response.status_code == 303 and response.location.endswith("/pin")
    assert client.get("/").status_code == 302  # no session before the PIN
    response = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert response.status_code == 303
    cookie = client.get_cookie(app.config["AUTH_COOKIE_NAME"])
    assert cookie is not None and cookie.http_only
    home = client.get("/")
    assert home.status_code == 200 and "anna" in home.text


def test_every_login_sends_a_fresh_pin(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    first = outbox.last_pin()
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").text)})
    login(client, outbox)
    assert len(outbox.sms()) == 3  # activation + two logins
    assert outbox.sms()[0]["text"] != outbox.sms()[1]["text"] or first != outbox.last_pin()


def test_logout_ends_the_session(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    response = client.post("/logout", data={"csrf_token": csrf_token(client.get("/").text)})
    assert response.status_code == 303
    assert client.get("/").status_code == 302


def progress_line(page: str) -> list[tuple[str, str]]:
    """The progress line's steps: (label, "current", "done" or "")."""
    line = re.search(r'<ol class="progress".*?</ol>', page, re.S).group(0)
    steps = re.findall(r'<li(?: aria-current="step")?(?: class="(\w+)")?>([^<]+)</li>', line)
    return [(label, state) for state, label in steps]


def test_the_progress_line_shows_the_steps_of_the_flow_the_person_is_in(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    assert progress_line(client.get(link).text) == [
        ("Passwort vergeben", "current"),
        ("Bestätigen", ""),
    ]
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert progress_line(client.get("/pin").text) == [
        ("Passwort vergeben", "done"),
        ("Bestätigen", "current"),
    ]
    done = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert progress_line(done.text) == [("Passwort vergeben", "done"), ("Bestätigen", "done")]

    assert progress_line(client.get("/login").text) == [("Passwort", "current"), ("PIN", "")]
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert progress_line(client.get("/pin").text) == [("Passwort", "done"), ("PIN", "current")]
