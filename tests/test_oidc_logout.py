"""RP-initiated logout, back-channel logout, and what disabling an account does to tokens."""

import ipaddress
import socket
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.oidc import logout_post
from idp.platform import network
from tests.oidc_fixtures import *  # noqa: F403 (fixtures)

EVENT = "http://schemas.openid.net/event/backchannel-logout"


def post_once(idp, uri: str, token: str):
    """One delivery try, as the logout outbox makes it."""
    with network.guarded_session() as http:
        return logout_post.post(http, uri, token, 3, idp.app.logger)


def logout_claims(idp, token: str) -> dict:
    keys = KeySet.import_key_set(requests.get(idp.url("/jwks.json"), timeout=5).json())
    return jwt.decode(token, keys, algorithms=["ES256"]).claims


def test_rp_initiated_logout_ends_the_session_and_tells_every_rp(
    idp, browser, make_rp, backchannel
):
    post_logout = "https://portal.example/after-logout"
    portal = make_rp(
        "--post-logout-redirect-uri",
        post_logout,
        "--backchannel-logout-uri",
        backchannel.uri,
        name="e:service",
    )
    phone = make_rp(name="cloud.phone")
    token = portal.sign_in(browser)
    phone_token = phone.sign_in(browser)
    sid = portal.verify_id_token(token["id_token"])["sid"]

    query = {
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": post_logout,
        "state": "bye",
    }
    response = browser.http.get(
        idp.url("/end_session?" + urlencode(query)), allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == post_logout
    assert parse_qs(target.query)["state"] == ["bye"]

    claims = logout_claims(idp, backchannel.wait())
    assert claims["sid"] == sid
    assert claims["aud"] == portal.client_id
    assert EVENT in claims["events"]
    assert "nonce" not in claims

    # The session is over: prompt=none fails, and the tokens of both RPs are dead.
    again = portal.callback_params(browser.visit(portal.authorization_url(prompt="none")))
    assert again["error"] == "login_required"
    for access in (token["access_token"], phone_token["access_token"]):
        status = requests.get(
            idp.url("/userinfo"), headers={"Authorization": f"Bearer {access}"}, timeout=5
        ).status_code
        assert status == 401


def test_logout_without_a_post_logout_redirect_uri_says_the_person_is_signed_out(idp, browser, rp):
    token = rp.sign_in(browser)
    query = urlencode({"id_token_hint": token["id_token"]})
    landed = browser.http.get(
        idp.url(f"/end_session?{query}"), headers={"Accept-Language": "de"}, timeout=5
    )
    assert urlsplit(landed.url).path == "/logged-out"
    assert "Sie sind abgemeldet" in landed.text


def test_unregistered_post_logout_redirect_uri_is_refused(idp, browser, make_rp):
    rp = make_rp("--post-logout-redirect-uri", "https://portal.example/bye")
    token = rp.sign_in(browser)
    query = {
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": "https://portal.example/bye/",
    }
    response = browser.http.get(
        idp.url("/end_session?" + urlencode(query)), allow_redirects=False, timeout=5
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_logout_without_hint_asks_the_person(idp, browser, rp):
    rp.sign_in(browser)
    response = browser.http.get(idp.url("/end_session"), allow_redirects=False, timeout=5)
    assert urlsplit(response.headers["Location"]).path == "/logout"


def test_unreachable_backchannel_endpoint_does_not_block_logout(idp, browser, make_rp):
    rp = make_rp("--backchannel-logout-uri", "http://127.0.0.1:9/nobody-listens")
    token = rp.sign_in(browser)
    response = browser.http.get(
        idp.url("/end_session?" + urlencode({"id_token_hint": token["id_token"]})),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 303


def test_delivery_refuses_a_name_that_resolves_to_the_metadata_service_by_now(
    idp, backchannel, resolver, caplog, monkeypatch
):
    """DNS rebinding: the URI's name resolved well when the client was registered; at delivery
    it points at 169.254.169.254, and the address connected to is what counts. Directly: a
    proxy from the environment would connect wherever the name points for it."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    uri = f"http://localhost:{urlsplit(backchannel.uri).port}/backchannel-logout"
    resolver.answers["localhost"] = ["127.0.0.1"]
    idp.create_client("--backchannel-logout-uri", uri)

    resolver.answers["localhost"] = ["::ffff:169.254.169.254"]
    post_once(idp, uri, "logout-token")
    assert backchannel.tokens == []
    assert "refused: localhost reaches 169.254.169.254" in caplog.text

    resolver.answers["localhost"] = ["127.0.0.1"]
    post_once(idp, uri, "logout-token")
    assert backchannel.tokens == ["logout-token"]


def test_delivery_never_falls_back_on_an_unchecked_lookup(
    idp, backchannel, resolver, caplog, monkeypatch
):
    """DNS rebinding through a failed check: the RP's DNS answers the checked lookup SERVFAIL
    and the next one with the metadata address. The delivery fails as for any name that does
    not resolve; no second lookup connects unchecked. (127.0.0.0/8 stands in for the metadata
    service: nothing listens on 169.254.169.254 here.)"""
    monkeypatch.setattr(
        network,
        "FORBIDDEN_NETWORKS",
        (*network.FORBIDDEN_NETWORKS, ipaddress.ip_network("127.0.0.0/8")),
    )
    uri = f"http://rebind.test:{urlsplit(backchannel.uri).port}/backchannel-logout"
    system_lookup = socket.getaddrinfo

    def rebinding_lookup(host, *args, **kwargs):
        return system_lookup("127.0.0.1" if host == "rebind.test" else host, *args, **kwargs)

    # The checked lookup goes through the resolver fixture, whose .test names do not resolve
    # (SERVFAIL); any other lookup of the name gets the forbidden address.
    monkeypatch.setattr(socket, "getaddrinfo", rebinding_lookup)
    post_once(idp, uri, "logout-token")
    assert backchannel.tokens == []
    assert "failed: ConnectionError" in caplog.text

    # Control: with the lookup answering, the check sees the address and refuses it.
    resolver.answers["rebind.test"] = ["127.0.0.1"]
    post_once(idp, uri, "logout-token")
    assert backchannel.tokens == []
    assert "refused: rebind.test reaches 127.0.0.1" in caplog.text


def test_disabling_a_user_revokes_tokens_and_sends_backchannel_logout(
    idp, browser, make_rp, backchannel
):
    rp = make_rp("--backchannel-logout-uri", backchannel.uri)
    token = rp.sign_in(browser)
    result = idp.app.test_cli_runner().invoke(args=["users", "disable", "anna"])
    assert result.exit_code == 0, result.output
    assert logout_claims(idp, backchannel.wait())["aud"] == rp.client_id
    status = requests.get(
        idp.url("/userinfo"),
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    ).status_code
    assert status == 401
    refresh = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refresh.status_code == 400
