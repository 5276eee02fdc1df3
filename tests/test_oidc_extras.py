"""What relying parties and operators notice around the protocol: ui_locales at /authorize,
JSON errors on protocol paths, the tokens-issued counter and the signing-key readiness check."""

import base64
import hashlib
import re

import requests
from prometheus_client import REGISTRY

from idp.oidc import keys

GERMAN = {"Accept-Language": "de"}


def authorize_params(client_id: str, redirect_uri: str, **extra) -> dict:
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "st",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **extra,
    }


def page_language(response) -> str:
    return re.search(r'<html lang="([a-z]+)"', response.text).group(1)


def login_page_after_authorize(idp, rp, **extra):
    http = requests.Session()
    response = http.get(
        idp.url("/authorize"),
        params=authorize_params(rp.client_id, rp.redirect_uri, **extra),
        headers=GERMAN,
        allow_redirects=True,
        timeout=10,
    )
    assert response.url.startswith(idp.url("/login")), response.url
    return http, response


def test_ui_locales_sets_the_language_of_that_login(idp, rp, user):
    http, page = login_page_after_authorize(idp, rp, ui_locales="fr-CA en-US de")
    assert page_language(page) == "en"
    # The PIN page and any other page of the same browser session follow.
    assert page_language(http.get(idp.url("/login"), headers=GERMAN, timeout=10)) == "en"


def test_without_ui_locales_the_browser_decides(idp, rp, user):
    _, page = login_page_after_authorize(idp, rp)
    assert page_language(page) == "de"
    _, page = login_page_after_authorize(idp, rp, ui_locales="fr it")
    assert page_language(page) == "de"


def test_the_persons_own_choice_outranks_ui_locales(idp, rp, user):
    http, page = login_page_after_authorize(idp, rp, ui_locales="en")
    assert page_language(page) == "en"
    http.get(idp.url("/language/de?next=/login"), timeout=10)
    assert page_language(http.get(idp.url("/login"), headers=GERMAN, timeout=10)) == "de"


def test_protocol_paths_answer_404_and_405_in_json(client):
    for method, path, status in (
        ("get", "/token", 405),
        ("put", "/userinfo", 405),
        ("get", "/revoke", 405),
        ("get", "/introspect", 405),
        ("post", "/jwks.json", 405),
        ("get", "/token/extra", 404),
        ("get", "/.well-known/unknown", 404),
        ("post", "/.well-known/openid-configuration", 405),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == status, (method, path)
        assert response.is_json, (method, path, response.content_type)
        assert response.json["error"] in ("not_found", "method_not_allowed")
        if status == 405:
            assert response.headers.get("Allow"), path


def test_pages_for_people_stay_html(client):
    for path in ("/no-such-page", "/tokens", "/token-of-something"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.content_type.startswith("text/html"), path


def issued(grant: str) -> float:
    return REGISTRY.get_sample_value("idp_tokens_issued_total", {"grant": grant}) or 0.0


def test_tokens_issued_are_counted_by_grant(idp, browser, rp):
    before = {grant: issued(grant) for grant in ("authorization_code", "refresh_token")}
    token = rp.sign_in(browser)
    refreshed = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refreshed.status_code == 200
    # A refused grant counts nothing.
    again = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert again.status_code == 400
    assert issued("authorization_code") == before["authorization_code"] + 1
    assert issued("refresh_token") == before["refresh_token"] + 1


def test_readiness_checks_the_signing_key(make_app):
    app = make_app()
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["signing_key"] == "ok"


def test_readiness_fails_when_the_signing_key_cannot_be_decrypted(make_app, monkeypatch):
    first = make_app()
    assert first.test_client().get("/readyz").status_code == 200
    # Another secret (a misconfigured deployment) cannot decrypt the stored key.
    monkeypatch.setattr(keys, "_private_keys", {})
    other = make_app(SECRET_KEY="another secret", KEY_ENCRYPTION_SECRET="another key secret")
    response = other.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["failing"] == ["signing_key"]
