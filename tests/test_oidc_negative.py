"""What must fail closed: bad redirect URIs, missing PKCE, replayed codes, forged tokens."""

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import OctKey

from idp.oidc import keys, token_store
from idp.platform import clock
from idp.platform.extensions import db
from tests.oidc_fixtures import HOST


def redeem(idp, rp, code, verifier=None, redirect_uri=None):
    return requests.post(
        idp.url("/token"),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or rp.redirect_uri,
            "code_verifier": verifier or rp.last["verifier"],
        },
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )


def fresh_code(browser, rp, **params) -> str:
    return rp.callback_params(browser.visit(rp.authorization_url(**params)))["code"]


def authorize_raw(browser, idp, **params):
    return browser.http.get(
        idp.url("/authorize?" + urlencode(params)), allow_redirects=False, timeout=5
    )


def test_code_replay_fails_and_revokes_what_the_code_gave(idp, browser, rp):
    code = fresh_code(browser, rp)
    first = redeem(idp, rp, code)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert bearer(idp, access).status_code == 200
    again = redeem(idp, rp, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert bearer(idp, access).status_code == 401
    refresh = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refresh.status_code == 400


def test_twenty_parallel_redemptions_one_succeeds(idp, browser, rp):
    code = fresh_code(browser, rp)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: redeem(idp, rp, code).status_code, range(20)))
    assert results.count(200) == 1, results
    assert set(results) == {200, 400}


def test_a_replay_between_the_claim_and_the_tokens_leaves_the_winner_its_answer(
    idp, browser, rp, monkeypatch
):
    """The winner of a code is held right after its claim until a replay of the code has been
    answered (as a busy database or a slow worker may do): it still gets its tokens, and the
    replay revokes them, as it does when it comes later (see test_code_replay_...)."""
    code = fresh_code(browser, rp)
    claimed, replay_answered = threading.Event(), threading.Event()
    real_claim = token_store.claim_code

    def claim_then_wait_for_the_replay(*args):
        won = real_claim(*args)
        if won:
            claimed.set()
            assert replay_answered.wait(timeout=30)
        return won

    monkeypatch.setattr(token_store, "claim_code", claim_then_wait_for_the_replay)
    with ThreadPoolExecutor(max_workers=1) as pool:
        winner = pool.submit(redeem, idp, rp, code)
        assert claimed.wait(timeout=30)
        replay = redeem(idp, rp, code)
        replay_answered.set()
        answer = winner.result()
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert answer.status_code == 200, answer.text
    assert bearer(idp, answer.json()["access_token"]).status_code == 401


def test_code_expires_after_a_minute(idp, browser, rp, frozen_clock):
    code = fresh_code(browser, rp)
    frozen_clock.advance(seconds=61)
    assert redeem(idp, rp, code).json()["error"] == "invalid_grant"


def test_code_is_bound_to_pkce_verifier_and_redirect_uri(idp, browser, make_rp):
    rp = make_rp()
    code = fresh_code(browser, rp)
    wrong = redeem(idp, rp, code, verifier="x" * 50)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = fresh_code(browser, rp)
    moved = redeem(idp, rp, code, redirect_uri=rp.redirect_uri + "x")
    assert moved.status_code == 400


def test_code_of_another_client_is_refused(idp, browser, make_rp):
    owner, thief = make_rp(), make_rp()
    code = fresh_code(browser, owner)
    thief.last = owner.last
    assert redeem(idp, thief, code, redirect_uri=owner.redirect_uri).status_code == 400
    # The owner can still use it: the thief's attempt did not burn it.
    assert redeem(idp, owner, code).status_code == 200


def base_params(rp, **overrides):
    params = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": "s1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def tricks(redirect_uri: str) -> list[str]:
    port = redirect_uri.split(":")[2].split("/")[0]
    return [
        redirect_uri + "/",
        redirect_uri + "?extra=1",
        redirect_uri + "#fragment",
        redirect_uri.upper().replace("HTTP", "http"),
        redirect_uri.replace("/callback", "/CALLBACK"),
        redirect_uri.replace("/callback", "/callback/..;/evil"),
        redirect_uri.replace("/callback", "/evil/../callback"),
        redirect_uri.replace("http://", "https://"),
        redirect_uri.replace(HOST, "localhost"),
        redirect_uri.replace(f"{HOST}:{port}", f"{HOST}:{port}@evil.example"),
        f"http://evil.example@{HOST}:{port}/callback",
        redirect_uri.replace(f":{port}", f":{int(port) + 1}"),
        "https://evil.example/callback",
    ]


@pytest.mark.parametrize("trick", range(13))
def test_redirect_uri_tricks_get_an_error_page_not_a_redirect(idp, browser, rp, trick):
    wrong = tricks(rp.redirect_uri)[trick]
    response = authorize_raw(browser, idp, **base_params(rp, redirect_uri=wrong))
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_missing_redirect_uri_and_unknown_client_get_an_error_page(idp, browser, rp):
    for params in (base_params(rp, redirect_uri=None), base_params(rp, client_id="nobody")):
        response = authorize_raw(browser, idp, **params)
        assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"response_type": "token"},
    ],
)
def test_bad_requests_go_back_with_error_state_and_iss(idp, browser, rp, overrides):
    response = authorize_raw(browser, idp, **base_params(rp, **overrides))
    params = rp.callback_params(response)
    assert params["error"] in ("invalid_request", "unsupported_response_type")
    assert params["state"] == "s1"
    assert params["iss"] == idp.issuer
    assert "code" not in params


UNSUPPORTED_REQUESTS = [
    ({"request": "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."}, "request_not_supported"),
    ({"request_uri": "https://rp.example/request.jwt"}, "request_uri_not_supported"),
    ({"request": "x", "request_uri": "urn:x"}, "request_not_supported"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"response_mode": "query.jwt"}, "invalid_request"),
]


@pytest.mark.parametrize(("overrides", "error"), UNSUPPORTED_REQUESTS)
def test_unsupported_request_parameters_go_back_as_errors(idp, browser, rp, overrides, error):
    """OIDC Core 6.1-6.2: a request object or response mode that we cannot honour is refused,
    not ignored, even for a person who is signed in (who would otherwise get a code)."""
    rp.sign_in(browser)
    response = authorize_raw(browser, idp, **base_params(rp, **overrides))
    params = rp.callback_params(response)
    assert params["error"] == error
    assert params["state"] == "s1"
    assert params["iss"] == idp.issuer
    assert "code" not in params


def test_the_query_response_mode_and_empty_parameters_are_accepted(idp, browser, rp):
    rp.sign_in(browser)
    for overrides in ({"response_mode": "query"}, {"request": "", "request_uri": ""}):
        params = rp.callback_params(authorize_raw(browser, idp, **base_params(rp, **overrides)))
        assert "code" in params, params


@pytest.mark.parametrize(("overrides", "error"), UNSUPPORTED_REQUESTS)
def test_unsupported_parameters_with_an_unverified_redirect_uri_get_the_error_page(
    idp, browser, rp, overrides, error
):
    for wrong in (
        base_params(rp, redirect_uri="https://evil.example/cb"),
        base_params(rp, client_id="x"),
    ):
        response = authorize_raw(browser, idp, **{**wrong, **overrides})
        assert response.status_code == 400 and "Location" not in response.headers


def forged_tokens(idp, claims: dict) -> list[str]:
    """alg none, and HS256 keyed with our published public key."""
    unsigned = (
        b64(json.dumps({"alg": "none", "typ": "at+jwt"})) + "." + b64(json.dumps(claims)) + "."
    )
    public = requests.get(idp.url("/jwks.json"), timeout=5).json()["keys"][0]
    hmac_key = OctKey.import_key(json.dumps(public).encode())
    confused = jwt.encode(
        {"alg": "HS256", "kid": public["kid"], "typ": "at+jwt"},
        claims,
        hmac_key,
        algorithms=["HS256"],
    )
    return [unsigned, confused]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def bearer(idp, token):
    return requests.get(
        idp.url("/userinfo"), headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def test_forged_tokens_are_refused_everywhere(idp, browser, rp):
    real = rp.sign_in(browser)
    claims = rp.verify_id_token(real["id_token"])
    for forged in forged_tokens(idp, {**claims, "exp": claims["exp"] + 3600}):
        assert bearer(idp, forged).status_code == 401
        introspected = requests.post(
            idp.url("/introspect"),
            data={"token": forged},
            auth=(rp.client_id, rp.client_secret),
            timeout=5,
        )
        assert introspected.json() == {"active": False}
        hinted = rp.callback_params(
            browser.visit(rp.authorization_url(prompt="none", id_token_hint=forged))
        )
        assert hinted["error"] == "invalid_request" and "code" not in hinted
        logout = browser.http.get(
            idp.url("/end_session?" + urlencode({"id_token_hint": forged})),
            allow_redirects=False,
            timeout=5,
        )
        assert logout.status_code == 400
    # Still signed in: none of the forged hints ended the session.
    assert "code" in rp.callback_params(browser.visit(rp.authorization_url(prompt="none")))


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


def test_token_endpoint_errors_are_json(idp, rp):
    response = requests.post(
        idp.url("/token"),
        data={"grant_type": "authorization_code", "code": "nothing"},
        auth=(rp.client_id, "wrong secret"),
        timeout=5,
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "credentials",
    [
        base64.b64encode(b"\xff\xfe:\xc3\x28").decode(),  # decodes, but not as UTF-8
        "w6Q6w7Y=\xe4",  # a Latin-1 letter in the base64 text itself
    ],
)
def test_basic_credentials_that_are_not_utf8_are_an_invalid_client(idp, rp, credentials):
    for path in ("/token", "/revoke", "/introspect"):
        response = requests.post(
            idp.url(path),
            data={"grant_type": "authorization_code", "code": "nothing", "token": "nothing"},
            headers={"Authorization": f"Basic {credentials}".encode("latin-1")},
            timeout=5,
        )
        assert response.status_code == 401, (path, response.status_code)
        assert response.json()["error"] == "invalid_client"
