"""The OpenID Connect code flow driven by Authlib's client against a live server, through the
hosted login with password and SMS PIN: ports of the conformance suite's Basic OP checks."""

import base64
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.oidc_fixtures import SCOPE, Browser


def test_oidcc_server_basic_flow(idp, browser, rp):
    token = rp.sign_in(browser)
    assert browser.logins == 1
    assert token["token_type"].lower() == "bearer"
    assert set(token["scope"].split()) == set(SCOPE.split())
    claims = rp.verify_id_token(token["id_token"])
    assert claims["nonce"] == rp.last["nonce"]
    assert claims["amr"] == ["pwd", "sms", "mfa"]
    assert {"auth_time", "iat", "exp", "sid", "at_hash", "acr"} <= set(claims)
    assert claims["sub"] != "anna"
    assert token["refresh_token"]
    userinfo = requests.get(
        idp.url("/userinfo"),
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    ).json()
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["preferred_username"] == "anna"
    assert userinfo["email"] == "anna@example.com"
    assert userinfo["phone_number"] == "+4915112345678"


def test_discovery_is_complete_and_cacheable(idp):
    response = requests.get(idp.url("/.well-known/openid-configuration"), timeout=5)
    assert "max-age" in response.headers["Cache-Control"]
    document = response.json()
    assert document["issuer"] == idp.issuer
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["backchannel_logout_session_supported"] is True
    assert document["end_session_endpoint"] == idp.url("/end_session")
    assert document["ui_locales_supported"] == ["de", "en"]
    assert set(document["scopes_supported"]) == set(SCOPE.split())
    jwks = requests.get(document["jwks_uri"], timeout=5)
    assert "max-age" in jwks.headers["Cache-Control"]
    assert all(key["kid"] for key in jwks.json()["keys"])
    assert all("d" not in key for key in jwks.json()["keys"])


def test_client_secret_post_and_userinfo_post(idp, browser, make_rp):
    rp = make_rp(auth_method="client_secret_post")
    token = rp.sign_in(browser)
    userinfo = requests.post(
        idp.url("/userinfo"), data={"access_token": token["access_token"]}, timeout=5
    )
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == rp.verify_id_token(token["id_token"])["sub"]


def test_public_client_uses_pkce_alone(browser, make_rp):
    rp = make_rp(public=True)
    token = rp.sign_in(browser)
    assert rp.verify_id_token(token["id_token"])["aud"] == rp.client_id


def test_token_response_is_not_cached_and_access_token_is_rfc9068(idp, browser, rp):
    response = browser.visit(rp.authorization_url())
    code = rp.callback_params(response)["code"]
    token = requests.post(
        idp.url("/token"),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.last["verifier"],
        },
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert token.status_code == 200
    assert token.headers["Cache-Control"] == "no-store"
    access = token.json()["access_token"]
    header = json.loads(base64.urlsafe_b64decode(access.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    assert token.json()["expires_in"] == 300


def test_sso_for_a_second_client_without_new_login(browser, make_rp):
    first, second = make_rp(name="e:service"), make_rp(name="cloud.phone")
    one = first.verify_id_token(first.sign_in(browser)["id_token"])
    two = second.verify_id_token(second.sign_in(browser)["id_token"])
    assert browser.logins == 1
    assert one["sid"] == two["sid"] and one["auth_time"] == two["auth_time"]
    assert one["sub"] == two["sub"]


def test_prompt_login_asks_again_and_advances_auth_time(browser, rp, frozen_clock):
    first = rp.verify_id_token(rp.sign_in(browser)["id_token"])
    frozen_clock.advance(seconds=5)
    again = rp.verify_id_token(rp.sign_in(browser, prompt="login")["id_token"])
    assert browser.logins == 2
    assert again["auth_time"] >= first["auth_time"] + 5


def test_max_age_exceeded_asks_again(browser, rp, frozen_clock):
    first = rp.verify_id_token(rp.sign_in(browser)["id_token"])
    frozen_clock.advance(seconds=5)
    within = rp.verify_id_token(rp.sign_in(browser, max_age="3600")["id_token"])
    assert browser.logins == 1 and within["auth_time"] == first["auth_time"]
    again = rp.verify_id_token(rp.sign_in(browser, max_age="1")["id_token"])
    assert browser.logins == 2 and again["auth_time"] > first["auth_time"]


def test_fresh_login_marker_cannot_skip_the_login(idp, browser, rp):
    rp.sign_in(browser)
    response = browser.http.get(rp.authorization_url(prompt="login"), allow_redirects=False)
    login_url = response.headers["Location"]
    resume = parse_qs(urlsplit(login_url).query)["next"][0]
    # Going straight to the resume address without logging in leads back to the login.
    skipped = browser.http.get(idp.url(resume))
    assert skipped.status_code == 200
    assert urlsplit(skipped.url).path == "/login"
    assert all(step.headers["Location"].startswith("/") for step in skipped.history)


def test_prompt_none_without_session_gives_login_required(idp, browser, rp):
    response = browser.visit(rp.authorization_url(prompt="none"))
    params = rp.callback_params(response)
    assert params["error"] == "login_required"
    assert params["state"] == rp.last["state"]
    assert params["iss"] == idp.issuer


def test_prompt_none_with_session_and_id_token_hint(browser, rp):
    first = rp.sign_in(browser)
    again = rp.sign_in(browser, prompt="none", id_token_hint=first["id_token"])
    assert browser.logins == 1
    assert (
        rp.verify_id_token(again["id_token"])["sub"] == rp.verify_id_token(first["id_token"])["sub"]
    )


def test_unknown_parameters_are_ignored(browser, rp):
    token = rp.sign_in(browser, extra_parameter="whatever", another="1")
    assert rp.verify_id_token(token["id_token"])


def test_login_hint_prefills_the_username(idp, browser, rp):
    response = browser.http.get(rp.authorization_url(login_hint="anna"), allow_redirects=False)
    page = browser.http.get(idp.url(response.headers["Location"]))
    assert 'value="anna"' in page.text


def test_refresh_rotates_and_reuse_revokes_the_family(idp, browser, rp):
    token = rp.sign_in(browser)
    first_refresh = token["refresh_token"]
    session = rp.session()
    rotated = session.refresh_token(idp.url("/token"), refresh_token=first_refresh)
    assert rotated["refresh_token"] != first_refresh
    assert userinfo_status(idp, rotated["access_token"]) == 200
    # The old one again: theft is assumed, and the whole family dies.
    reuse = post_refresh(idp, rp, first_refresh)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert post_refresh(idp, rp, rotated["refresh_token"]).status_code == 400
    assert userinfo_status(idp, rotated["access_token"]) == 401


def test_twenty_parallel_refreshes_with_one_token_one_succeeds_and_the_family_dies(
    idp, browser, rp
):
    """Of parallel requests with one refresh token exactly one is answered with new tokens
    (the claim and the storing are one step); the others are reuse, which ends the family,
    the winner's new tokens with it."""
    from concurrent.futures import ThreadPoolExecutor

    token = rp.sign_in(browser)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda _: post_refresh(idp, rp, token["refresh_token"]), range(20))
        )
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 1, statuses
    assert {response.json()["error"] for response in responses if response.status_code != 200} == {
        "invalid_grant"
    }
    winner = next(response.json() for response in responses if response.status_code == 200)
    assert userinfo_status(idp, winner["access_token"]) == 401
    assert post_refresh(idp, rp, winner["refresh_token"]).status_code == 400


def test_the_token_statements_are_compiled_once_not_per_request(idp, browser, rp):
    """The refresh grant's and userinfo's statements come from SQLAlchemy's compiled cache:
    a statement it cannot cache (a multi-row VALUES, say) is compiled again on every request,
    which cost more than the rest of its execution."""
    from sqlalchemy import event

    from idp.platform.database import _AUTOCOMMIT_ENGINE
    from idp.platform.extensions import db

    token = rp.sign_in(browser)
    with idp.app.app_context():
        engines = {db.engine, idp.app.extensions.get(_AUTOCOMMIT_ENGINE, db.engine)}

    def compiled_statements_of_a_request(send) -> list:
        compiled = []

        def seen(connection, cursor, statement, parameters, context, executemany):
            compiled.append(context.compiled)

        for engine in engines:
            event.listen(engine, "before_cursor_execute", seen)
        try:
            response = send()
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", seen)
        assert response.status_code == 200, response.text
        return compiled

    def refresh():
        refreshed = post_refresh(idp, rp, token["refresh_token"])
        token.update(refreshed.json())
        return refreshed

    def userinfo():
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        return requests.get(idp.url("/userinfo"), headers=bearer, timeout=5)

    for send in (refresh, userinfo):
        send()  # the first one may read what the process caches (the published keys)
        first = compiled_statements_of_a_request(send)
        again = compiled_statements_of_a_request(send)
        # On PostgreSQL the token read runs on psycopg's cursor (token_store_pg), unseen here;
        # the refresh grant's claim and insert go through SQLAlchemy on every database.
        assert first or send is userinfo
        assert all(statement is not None for statement in first)
        assert [id(statement) for statement in again] == [id(statement) for statement in first]


def test_a_refresh_brings_a_new_id_token_with_the_claims_of_now(idp, browser, rp):
    """OIDC Core 12.2: same issuer, subject, audience and auth_time as at the login, a new iat,
    no nonce; the claims as they are now (here: an entitlement granted since the login)."""
    from idp.accounts.models import User
    from idp.oidc.keys import half_hash
    from idp.platform.extensions import db

    token = rp.sign_in(browser)
    first = rp.verify_id_token(token["id_token"])
    assert first["nonce"] == rp.last["nonce"] and first.get("entitlements") == []
    with idp.app.app_context():
        db.session.query(User).filter_by(username="anna").one().entitlements = ["cloud.phone"]
        db.session.commit()

    refreshed = rp.session().refresh_token(idp.url("/token"), refresh_token=token["refresh_token"])
    claims = rp.verify_id_token(refreshed["id_token"])

    for same in ("iss", "sub", "aud", "azp", "auth_time", "acr", "amr", "sid"):
        assert claims[same] == first[same], same
    assert claims["iat"] >= first["iat"] and "nonce" not in claims
    assert claims["entitlements"] == ["cloud.phone"]
    assert claims["at_hash"] == half_hash(refreshed["access_token"])


def test_a_refresh_without_openid_brings_no_id_token(idp, browser, rp):
    token = rp.sign_in(browser)
    narrowed = post_refresh(idp, rp, token["refresh_token"], scope="offline_access")
    assert narrowed.status_code == 200, narrowed.text
    assert "id_token" not in narrowed.json() and narrowed.json()["scope"] == "offline_access"


def test_refresh_token_is_bound_to_its_client(idp, browser, make_rp):
    owner, other = make_rp(), make_rp()
    token = owner.sign_in(browser)
    stolen = post_refresh(idp, other, token["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


def test_revocation_of_refresh_token_ends_the_grant(idp, browser, rp):
    token = rp.sign_in(browser)
    revoked = requests.post(
        idp.url("/revoke"),
        data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert revoked.status_code == 200
    assert userinfo_status(idp, token["access_token"]) == 401
    assert post_refresh(idp, rp, token["refresh_token"]).status_code == 400


def test_introspection_shows_only_own_tokens(idp, browser, make_rp):
    owner, other = make_rp(), make_rp()
    token = owner.sign_in(browser)
    mine = introspect(idp, owner, token["access_token"])
    assert mine["active"] is True and mine["client_id"] == owner.client_id
    assert introspect(idp, other, token["access_token"]) == {"active": False}
    public = make_rp(public=True)
    refused = requests.post(
        idp.url("/introspect"),
        data={"token": token["access_token"], "client_id": public.client_id},
        timeout=5,
    )
    assert refused.status_code in (400, 401)


def userinfo_status(idp, access_token) -> int:
    return requests.get(
        idp.url("/userinfo"), headers={"Authorization": f"Bearer {access_token}"}, timeout=5
    ).status_code


def post_refresh(idp, rp, refresh_token, **extra):
    return requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )


def introspect(idp, rp, token) -> dict:
    response = requests.post(
        idp.url("/introspect"),
        data={"token": token},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_opaque_access_tokens_reveal_nothing_and_work_like_jwt_ones(idp, browser, make_rp):
    """A client registered with --access-token-format opaque: random values, not JWTs, that
    userinfo and introspection accept, that refresh and revocation handle as JWT ones, and
    that the ID token's at_hash covers."""
    from idp.oidc.keys import half_hash

    rp = make_rp("--access-token-format", "opaque")
    token = rp.sign_in(browser)
    opaque = token["access_token"]
    assert "." not in opaque and len(opaque) >= 43
    assert rp.verify_id_token(token["id_token"])["at_hash"] == half_hash(opaque)
    assert userinfo_status(idp, opaque) == 200
    assert introspect(idp, rp, opaque)["active"] is True
    # Other values of the same shape are not access tokens: a refresh token, random ones.
    for wrong in (token["refresh_token"], "A" * 43, "A" * 44, "A" * 8000):
        assert userinfo_status(idp, wrong) == 401, wrong[:50]

    refreshed = post_refresh(idp, rp, token["refresh_token"]).json()
    assert "." not in refreshed["access_token"]
    assert userinfo_status(idp, refreshed["access_token"]) == 200
    revoked = requests.post(
        idp.url("/revoke"),
        data={"token": refreshed["access_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert revoked.status_code == 200
    assert userinfo_status(idp, refreshed["access_token"]) == 401
    assert introspect(idp, rp, refreshed["access_token"]) == {"active": False}


def test_a_jwt_clients_access_token_is_never_taken_without_its_signature(idp, browser, rp):
    """The stored digest alone does not do for a JWT client: a value without dots is taken as
    opaque only for a client given opaque tokens."""
    from idp.oidc.models import Token, TokenKind
    from idp.platform.extensions import db
    from idp.platform.secrets import digest

    token = rp.sign_in(browser)
    dotless = "A" * 43
    with idp.app.app_context():
        row = db.session.query(Token).filter_by(kind=TokenKind.ACCESS).one()
        row.digest = digest(dotless)
        db.session.commit()
    assert userinfo_status(idp, dotless) == 401
    assert introspect(idp, rp, dotless) == {"active": False}
    assert userinfo_status(idp, token["access_token"]) == 401  # its digest is gone now


def test_a_tampered_opaque_token_is_refused(idp, browser, make_rp):
    rp = make_rp("--access-token-format", "opaque")
    token = rp.sign_in(browser)
    tampered = token["access_token"][:-1] + ("A" if token["access_token"][-1] != "A" else "B")
    assert userinfo_status(idp, tampered) == 401
    assert introspect(idp, rp, tampered) == {"active": False}


# --- max_age and the fresh-login marker of prompt=login ------------------------------------------


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


def test_max_age_zero_asks_for_a_login_once_and_then_issues_the_code(idp, browser, rp):
    first = rp.verify_id_token(rp.sign_in(browser)["id_token"])
    again = rp.verify_id_token(rp.sign_in(browser, max_age="0")["id_token"])
    assert browser.logins == 2 and again["auth_time"] >= first["auth_time"]


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
