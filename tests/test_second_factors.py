"""The seam for second factors (idp.authn.factors): a factor that exists in these tests alone,
registered on the app as a real one would be, confirms a login at a relying party through the
same login page, transaction and confirmation as the SMS PIN, and the ID token's `amr` names
it. Each factor's page confirms only the transactions that it was chosen for."""

import re
from datetime import datetime
from urllib.parse import urljoin

import pytest
import requests
from flask import Blueprint, render_template_string, request

from idp.authn import confirmations, factors, transactions
from idp.demo.servers import free_port
from idp.errors import ConfigurationError
from idp.platform import clock
from idp.platform.web import flow_transaction_token
from tests.conftest import PASSWORD, activate, csrf_token
from tests.oidc_fixtures import HOST, LiveIdp, RelyingParty, serving

SECRET_WORD = "swordfish"


class Verdict:
    def __init__(self, ok: bool):
        self.ok = ok


class SecretWord:
    """Knows a word that every account shares: a factor for tests, never for people."""

    name = "word"
    amr = ("kba",)
    step_endpoint = "secret_word.form"
    paid_per_challenge = False

    def __init__(self):
        self.started = []

    def usable_by(self, user) -> bool:
        return True

    def start(self, transaction, now, ip) -> None:
        self.started.append(transaction.id)

    def verify(self, transaction, answer, now: datetime) -> Verdict:
        if answer.get("word") != SECRET_WORD:
            return Verdict(False)
        return Verdict(transactions.claim(transaction, now))


SECRET_WORD_PAGE = """{% extends "base.html" %}{% block content %}
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input name="word" autocomplete="off"><button type="submit">OK</button></form>
{% endblock %}"""


def secret_word_blueprint(factor: SecretWord) -> Blueprint:
    bp = Blueprint("secret_word", __name__)

    def pending():
        return transactions.load(flow_transaction_token(), clock.now(), factor=factor.name)

    @bp.route("/test-factor", methods=["GET", "POST"])
    def form():
        transaction = pending()
        if transaction is None:
            return "no step of this factor", 410
        if request.method == "POST":
            if factor.verify(transaction, request.form, clock.now()).ok:
                return confirmations.finish(transaction)
            return render_template_string(SECRET_WORD_PAGE), 422
        return render_template_string(SECRET_WORD_PAGE)

    return bp


@pytest.fixture
def word_factor():
    return SecretWord()


@pytest.fixture
def word_idp(app, make_app, word_factor):
    """A live IdP that offers the test factor before the SMS PIN."""

    def offer_the_word_first(live):
        factors.register(live, word_factor)
        live.register_blueprint(secret_word_blueprint(word_factor))
        live.config["SECOND_FACTORS"] = ["word", "sms"]

    with serving(make_app, offer_the_word_first) as live:
        yield live


def sign_in_with_word(http: requests.Session, idp: LiveIdp, start_url: str, word: str):
    """Follows the IdP to its login page, signs in with the password, and answers the step the
    login leads to with `word`. Returns the last response (a redirect to the RP when it worked)."""
    login_page = http.get(start_url, timeout=10)
    assert login_page.url.startswith(idp.url("/login")), login_page.url
    next_path = re.search(r'name="next" value="([^"]+)"', login_page.text)
    form = {"csrf_token": csrf_token(login_page.text), "username": "anna", "password": PASSWORD}
    if next_path:
        form["next"] = next_path.group(1).replace("&amp;", "&")
    step = http.post(idp.url("/login"), data=form, allow_redirects=False, timeout=10)
    assert step.status_code == 303, step.text
    assert step.headers["Location"].endswith("/test-factor")
    page = http.get(idp.url("/test-factor"), timeout=10)
    answer = http.post(
        idp.url("/test-factor"),
        data={"csrf_token": csrf_token(page.text), "word": word},
        allow_redirects=False,
        timeout=10,
    )
    while answer.is_redirect:
        target = urljoin(answer.url, answer.headers["Location"])
        if not target.startswith(idp.issuer):
            break  # on to the relying party
        answer = http.get(target, allow_redirects=False, timeout=10)
    return answer


def test_a_factor_registered_in_the_tests_alone_confirms_a_login_and_names_itself_in_amr(
    word_idp, word_factor, outbox
):
    activate(word_idp.app, word_idp.app.test_client(), outbox)
    sms_before = len(outbox.sms())
    redirect_uri = f"http://{HOST}:{free_port()}/callback"
    created = word_idp.create_client(redirect_uri=redirect_uri)
    rp = RelyingParty(word_idp, created["client_id"], created["client_secret"], redirect_uri)
    http = requests.Session()

    response = sign_in_with_word(http, word_idp, rp.authorization_url(), SECRET_WORD)

    tokens = rp.redeem(response.headers["Location"])
    claims = rp.verify_id_token(tokens["id_token"])
    assert claims["amr"] == ["pwd", "kba", "mfa"]
    assert len(word_factor.started) == 1
    assert len(outbox.sms()) == sms_before  # the SMS factor was not asked


def test_a_wrong_answer_to_the_test_factor_grants_nothing(word_idp, outbox):
    activate(word_idp.app, word_idp.app.test_client(), outbox)
    http = requests.Session()

    response = sign_in_with_word(http, word_idp, word_idp.url("/login"), "guess")

    assert response.status_code == 422
    assert http.get(word_idp.url("/"), allow_redirects=False, timeout=10).is_redirect


def test_the_pin_page_does_not_confirm_a_step_of_another_factor(word_idp, outbox):
    activate(word_idp.app, word_idp.app.test_client(), outbox)
    http = requests.Session()
    login_page = http.get(word_idp.url("/login"), timeout=10)
    http.post(
        word_idp.url("/login"),
        data={"csrf_token": csrf_token(login_page.text), "username": "anna", "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )

    pin_page = http.get(word_idp.url("/pin"), timeout=10)

    assert pin_page.status_code == 410  # this browser's step belongs to the word factor


def test_the_test_factors_page_does_not_confirm_an_sms_step(app, client, outbox, word_factor):
    factors.register(app, word_factor)
    app.register_blueprint(secret_word_blueprint(word_factor))
    activate(app, client, outbox)
    page = client.get("/login")
    client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD},
    )

    response = client.post("/test-factor", data={"word": SECRET_WORD})

    assert response.status_code in (400, 410)  # no CSRF token, or no step of this factor
    assert client.get("/test-factor").status_code == 410
    assert client.get("/pin").status_code == 200  # the SMS step goes on


def test_by_default_every_login_goes_to_the_sms_pin(app, client, outbox):
    activate(app, client, outbox)
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD},
    )
    assert response.headers["Location"].endswith("/pin")
    assert app.config["SECOND_FACTORS"] == ["sms"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["sms", "passwordless"], "IDP_SECOND_FACTORS names unknown factor 'passwordless'"),
        ([], "IDP_SECOND_FACTORS must be a non-empty JSON list"),
    ],
)
def test_an_unknown_or_empty_factor_list_is_refused_at_start(make_app, setting, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        make_app(SECOND_FACTORS=setting)


def test_factors_are_named_by_a_comma_list_in_the_environment_too(make_app, monkeypatch):
    monkeypatch.setenv("IDP_SECOND_FACTORS", "sms")
    assert make_app().config["SECOND_FACTORS"] == ["sms"]


def test_a_login_at_the_idp_itself_lands_on_its_own_page_after_the_factor(word_idp, outbox):
    """A login without a relying party lands on the IdP's own page after the factor."""
    activate(word_idp.app, word_idp.app.test_client(), outbox)
    http = requests.Session()
    response = sign_in_with_word(http, word_idp, word_idp.url("/login"), SECRET_WORD)
    assert response.status_code == 200
    assert "anna" in response.text  # the IdP's own page: who is signed in
