"""Fixes from the security review: a huge or malformed max_age (L5), the fresh-login marker
that could be replayed from the browser's history (L4), key reloads that anyone could force with
unknown kids (L3), and access or logout tokens passed off as id_token_hint (L7)."""

import base64
import json
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt

from idp.oidc import keys
from idp.platform import clock
from idp.platform.extensions import db
from tests.oidc_fixtures import Browser

# --- L5: max_age -------------------------------------------------------------------------------


# Longer ones are refused (AUTHORIZATION_PARAMETERS): tests/test_oidc_way_back.py.
@pytest.mark.parametrize("max_age", [str(10**20), "9" * 32])
def test_huge_max_age_with_a_live_session_signs_in_without_asking_again(browser, rp, max_age):
    rp.sign_in(browser)
    token = rp.sign_in(browser, max_age=max_age)
    assert rp.verify_id_token(token["id_token"])
    assert browser.logins == 1


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "1e3", "٣"])
@pytest.mark.parametrize("signed_in", [True, False])
def test_malformed_max_age_goes_back_to_the_rp_as_invalid_request(
    idp, browser, rp, max_age, signed_in
):
    if signed_in:
        rp.sign_in(browser)
    response = browser.http.get(
        rp.authorization_url(max_age=max_age), allow_redirects=False, timeout=10
    )
    params = rp.callback_params(response)
    assert params["error"] == "invalid_request"
    assert params["state"] == rp.last["state"]
    assert params["iss"] == idp.issuer
    assert "code" not in params


# --- L4: the fresh-login marker ----------------------------------------------------------------


def login_location(response: requests.Response) -> str:
    assert response.is_redirect, (response.status_code, response.text[:300])
    return response.headers["Location"]


def resume_address(response: requests.Response) -> str:
    """Where the login that /authorize asked for comes back to."""
    location = urlsplit(login_location(response))
    assert location.path == "/login", location
    return parse_qs(location.query)["next"][0]


def fresh_login_for_prompt_login(idp, browser, rp) -> tuple[str, str]:
    """Signed in, then a prompt=login request completed with a new login: the authorization
    URL and the resume address it went through."""
    rp.sign_in(browser)
    authorization = rp.authorization_url(prompt="login")
    resume = resume_address(browser.http.get(authorization, allow_redirects=False, timeout=10))
    done = browser.visit(idp.url(resume))
    assert "code" in rp.callback_params(done)
    assert browser.logins == 2
    return authorization, resume


def marker_params(authorization: str, resume: str) -> dict:
    """What the resume address carries beyond the authorization request itself."""
    asked = parse_qs(urlsplit(authorization).query)
    return {k: v for k, v in parse_qs(urlsplit(resume).query).items() if k not in asked}


def test_an_old_marker_does_not_skip_a_new_prompt_login(idp, browser, rp):
    authorization, resume = fresh_login_for_prompt_login(idp, browser, rp)
    extra = marker_params(authorization, resume)
    again = rp.authorization_url(prompt="login")
    if extra:
        again += "&" + urlencode(extra, doseq=True)
    response = browser.http.get(again, allow_redirects=False, timeout=10)
    assert urlsplit(login_location(response)).path == "/login"


def test_the_resume_address_from_history_is_single_use(idp, browser, rp):
    _, resume = fresh_login_for_prompt_login(idp, browser, rp)
    replayed = browser.http.get(idp.url(resume), allow_redirects=False, timeout=10)
    assert urlsplit(login_location(replayed)).path == "/login"


def test_the_marker_is_bound_to_the_browser_that_was_sent_to_log_in(idp, browser, outbox, rp):
    rp.sign_in(browser)
    resume = resume_address(
        browser.http.get(rp.authorization_url(prompt="login"), allow_redirects=False, timeout=10)
    )
    # Another browser, freshly signed in after the marker was made, cannot use it.
    other = Browser(idp, outbox)
    other.visit(idp.url("/login"))
    assert other.logins == 1
    response = other.http.get(idp.url(resume), allow_redirects=False, timeout=10)
    assert urlsplit(login_location(response)).path == "/login"
    # The browser it was made for gets its code once it has logged in.
    assert "code" in rp.callback_params(browser.visit(idp.url(resume)))


def test_max_age_zero_asks_for_a_login_once_and_then_issues_the_code(idp, browser, rp):
    first = rp.verify_id_token(rp.sign_in(browser)["id_token"])
    again = rp.verify_id_token(rp.sign_in(browser, max_age="0")["id_token"])
    assert browser.logins == 2 and again["auth_time"] >= first["auth_time"]


# --- L3: unknown kids --------------------------------------------------------------------------


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unknown_kid_token(typ: str = "at+jwt") -> str:
    header = {"alg": "ES256", "kid": secrets.token_urlsafe(16), "typ": typ}
    return f"{b64(header)}.{b64({'sub': 'x'})}.{b64({'sig': 'nothing'})}"


@pytest.fixture
def reloads(monkeypatch) -> list:
    """Every read of the published keys from the database."""
    calls = []
    original = keys.published

    def counted(now):
        calls.append(now)
        return original(now)

    monkeypatch.setattr(keys, "published", counted)
    return calls


def signed_by_new_key(make_app, now) -> str:
    """A key that another process adds (rotation elsewhere), and a token it signed."""
    other = make_app()
    with other.app_context():
        row = keys.create("ES256", now, active_at=now)
        db.session.commit()
        key = keys._private_key(row)
        token = jwt.encode(
            {"alg": "ES256", "kid": row.kid, "typ": "JWT"},
            {"iss": other.config["ISSUER"], "sub": "s"},
            key,
            algorithms=["ES256"],
        )
        db.session.remove()
    return token


def test_unknown_kids_reload_the_keys_at_most_once_per_interval(
    app, make_app, reloads, monkeypatch
):
    with app.app_context():
        now = clock.now()
        keys.sign({"sub": "s"}, alg="ES256", now=now)
        keys.jwks_document(now)
        reloads.clear()
        signer_loads = []
        original_signing_key = keys.signing_key

        def counted_signing_key(alg, at):
            signer_loads.append(at)
            return original_signing_key(alg, at)

        monkeypatch.setattr(keys, "signing_key", counted_signing_key)
        for step in range(50):
            with pytest.raises(keys.InvalidJWT):
                keys.verify(unknown_kid_token(), now + timedelta(milliseconds=step))
        assert len(reloads) <= 1
        # The signer (a decrypted private key) was not thrown away.
        keys.sign({"sub": "s"}, alg="ES256", now=now + timedelta(seconds=1))
        assert signer_loads == []

        # A key that another process adds meanwhile is found once the interval has passed.
        token = signed_by_new_key(make_app, now)
        later = now + keys.UNKNOWN_KID_RELOAD_INTERVAL
        assert keys.verify(token, later)["sub"] == "s"
        assert len(reloads) == 2


def test_a_key_rotated_by_another_process_is_found_at_once(app, make_app):
    with app.app_context():
        now = clock.now()
        keys.jwks_document(now)
        token = signed_by_new_key(make_app, now)
        assert keys.verify(token, now + timedelta(seconds=1))["sub"] == "s"


def test_requests_with_random_kids_cause_at_most_one_reload(idp, reloads, monkeypatch):
    # However slow this machine: all the requests fall into one interval.
    monkeypatch.setattr(keys, "UNKNOWN_KID_RELOAD_INTERVAL", timedelta(hours=1), raising=False)
    requests.get(idp.url("/jwks.json"), timeout=5)
    before = len(reloads)
    for _ in range(20):
        response = requests.get(
            idp.url("/userinfo"),
            headers={"Authorization": f"Bearer {unknown_kid_token()}"},
            timeout=5,
        )
        assert response.status_code == 401
        logout = requests.get(
            idp.url("/end_session?" + urlencode({"id_token_hint": unknown_kid_token("JWT")})),
            allow_redirects=False,
            timeout=5,
        )
        assert logout.status_code == 400
    assert len(reloads) - before <= 1


# --- L7: only ID tokens are id_token_hints -----------------------------------------------------


def test_an_access_token_is_no_id_token_hint_at_authorize(idp, browser, rp):
    token = rp.sign_in(browser)
    response = browser.visit(
        rp.authorization_url(prompt="none", id_token_hint=token["access_token"])
    )
    params = rp.callback_params(response)
    assert params["error"] == "invalid_request" and "code" not in params
    assert params["state"] == rp.last["state"] and params["iss"] == idp.issuer
    # The ID token still serves.
    again = browser.visit(rp.authorization_url(prompt="none", id_token_hint=token["id_token"]))
    assert "code" in rp.callback_params(again)


@pytest.mark.parametrize("typ", ["at+jwt", "logout+jwt", "AT+JWT"])
def test_access_and_logout_tokens_are_no_id_token_hint_at_end_session(idp, browser, rp, typ):
    claims = rp.verify_id_token(rp.sign_in(browser)["id_token"])
    with idp.app.app_context():
        hint = keys.sign(
            {
                "iss": idp.issuer,
                "aud": rp.client_id,
                "sub": claims["sub"],
                "sid": claims["sid"],
                "iat": claims["iat"],
                "exp": claims["exp"],
            },
            alg="ES256",
            now=clock.now(),
            typ=typ,
        )
        db.session.remove()
    logout = browser.http.get(
        idp.url("/end_session?" + urlencode({"id_token_hint": hint})),
        allow_redirects=False,
        timeout=5,
    )
    assert logout.status_code == 400
    # Still signed in.
    assert "code" in rp.callback_params(browser.visit(rp.authorization_url(prompt="none")))
