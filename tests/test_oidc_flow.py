"""The OpenID Connect code flow driven by Authlib's client against a live server, through the
hosted login with password and SMS PIN: ports of the conformance suite's Basic OP checks."""

import requests

from tests.oidc_fixtures import *  # noqa: F403 (fixtures)
from tests.oidc_fixtures import SCOPE


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
