"""`idp clients ...` and `idp keys ...`: secrets shown once, bad input refused with one line."""

import json

import pytest
import requests

from idp.audit.models import AuditEvent
from idp.oidc import keys
from idp.oidc.models import Client, SigningKey
from idp.platform import clock


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_create_confidential_client_prints_secret_once_and_stores_a_digest(app):
    result = run(
        app, "clients", "create", "Portal", "--redirect-uri", "https://p.example/cb", "--json"
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert set(created) == {"client_id", "client_secret"}
    with app.app_context():
        client = Client.query.one()
        assert client.client_id == created["client_id"]
        assert created["client_secret"] not in (client.secret_digest or "")
        assert len(client.secret_digest) == 64
    listed = run(app, "clients", "list", "--json")
    assert created["client_secret"] not in listed.stdout
    assert json.loads(listed.stdout)[0]["redirect_uris"] == ["https://p.example/cb"]


def test_public_client_has_no_secret(app):
    result = run(
        app,
        "clients",
        "create",
        "SPA",
        "--redirect-uri",
        "http://127.0.0.1:8080/cb",
        "--public",
        "--json",
    )
    assert json.loads(result.stdout)["client_secret"] is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://portal.example/cb",
        "https://portal.example/cb#frag",
        "https://user@portal.example/cb",
        "portal.example/cb",
        "javascript:alert(1)",
    ],
)
def test_bad_redirect_uri_is_refused_and_nothing_is_created(app, uri):
    result = run(app, "clients", "create", "Portal", "--redirect-uri", uri)
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1
    with app.app_context():
        assert Client.query.count() == 0


LINK_LOCAL_AND_METADATA_TARGETS = [
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.0.1/logout",
    "https://[fe80::1]/logout",
    "https://[fe80::1%25eth0]/logout",
    "https://[::ffff:169.254.169.254]/logout",
    "https://[::ffff:a9fe:a9fe]/logout",
    "https://[64:ff9b::a9fe:a9fe]/logout",
    # Local-use NAT64 (RFC 8215), with the IPv4 address where a /96 and a /48 prefix put it.
    "https://[64:ff9b:1::a9fe:a9fe]/logout",
    "https://[64:ff9b:1:a9fe:a9:fe00::]/logout",
    "https://[fd00:ec2::254]/logout",
    "https://100.100.100.200/logout",
    # IPv4 spellings that URL parsers pass on and resolvers accept.
    "https://2852039166/logout",
    "https://0xa9fea9fe/logout",
    "https://0251.0376.0251.0376/logout",
    "https://169.254.43518/logout",
    # With the trailing dot that resolvers take as the same address.
    "https://169.254.169.254./logout",
    "https://0xa9fea9fe./logout",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://METADATA.Google.Internal./logout",
    "https://instance-data/latest/",
    # Names that resolve there (see the resolver fixture).
    "https://metadata-alias.test/logout",
    "https://dual-stack.test/logout",
    "http://localhost:8080/logout",
]


@pytest.mark.parametrize("uri", LINK_LOCAL_AND_METADATA_TARGETS)
def test_backchannel_logout_uri_on_link_local_or_metadata_targets_is_refused(app, resolver, uri):
    resolver.answers["metadata-alias.test"] = ["169.254.169.254"]
    resolver.answers["dual-stack.test"] = ["203.0.113.7", "fe80::d1"]
    resolver.answers["localhost"] = ["::ffff:169.254.169.254"]
    result = run(
        app,
        "clients",
        "create",
        "Portal",
        "--redirect-uri",
        "https://p.example/cb",
        "--backchannel-logout-uri",
        uri,
    )
    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: invalid back-channel logout URI"), line
    assert "metadata" in line, line
    with app.app_context():
        assert Client.query.count() == 0


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.test/logout",
        "https://rp-not-in-dns-yet.test/logout",
        "https://10.1.2.3/logout",
        "https://[2001:db8::1]/logout",
        "http://127.0.0.1:8080/logout",
    ],
)
def test_backchannel_logout_uri_elsewhere_is_accepted(app, resolver, uri):
    """Private networks are where relying parties often are; a name that does not resolve yet
    is checked again at each delivery."""
    resolver.answers["rp.test"] = ["203.0.113.7", "2001:db8::7"]
    result = run(
        app,
        "clients",
        "create",
        "Portal",
        "--redirect-uri",
        "https://p.example/cb",
        "--backchannel-logout-uri",
        uri,
    )
    assert result.exit_code == 0, result.output


def test_rotate_secret_and_delete(app):
    result = run(app, "clients", "create", "P", "--redirect-uri", "https://p.example/cb", "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    created = json.loads(result.stdout)
    result = run(app, "clients", "rotate-secret", created["client_id"], "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    rotated = json.loads(result.stdout)
    assert rotated["client_secret"] != created["client_secret"]
    result = run(app, "clients", "delete", created["client_id"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    missing = run(app, "clients", "delete", created["client_id"])
    assert missing.exit_code != 0 and "no client" in missing.stderr, missing.stderr


def test_rotated_key_is_published_before_it_signs(app, frozen_clock):
    with app.app_context():
        first = keys.signing_key("ES256", clock.now()).kid
    result = run(app, "keys", "rotate")
    assert result.exit_code == 0, result.output
    with app.app_context():
        new = SigningKey.query.order_by(SigningKey.id.desc()).first().kid
        published = [key["kid"] for key in keys.jwks(clock.now())["keys"]]
        assert new in published and first in published
        assert keys.signing_key("ES256", clock.now()).kid == first
        frozen_clock.advance(seconds=app.config["KEY_PUBLISH_LEAD_TIME"] + 1)
        assert keys.signing_key("ES256", clock.now()).kid == new
        # The old key stays published until what it signed has expired...
        assert first in [key["kid"] for key in keys.jwks(clock.now())["keys"]]
        frozen_clock.advance(seconds=app.config["ID_TOKEN_LIFETIME"] + 1)
        assert first not in [key["kid"] for key in keys.jwks(clock.now())["keys"]]
    listed = run(app, "keys", "list", "--json")
    assert [entry["kid"] for entry in json.loads(listed.stdout)] == [new]


def test_private_keys_are_encrypted_at_rest(app):
    with app.app_context():
        row = keys.signing_key("RS256", clock.now())
        assert "PRIVATE KEY" not in row.private_key_encrypted
        assert "d" not in row.public_jwk


def test_keys_list_before_the_first_key_says_how_one_is_made(app):
    result = run(app, "keys", "list")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.strip() == (
        "no signing key yet: the first is made when the server first signs, "
        "or now with `idp keys rotate`"
    )
    assert json.loads(run(app, "keys", "list", "--json").stdout) == []
    # Nothing signs before it, so nothing needs to learn of it first.
    result = run(app, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert "published and signing now (no ES256 key signed yet)" in result.stdout
    assert json.loads(run(app, "keys", "list", "--json").stdout)[0]["signing"] is True


UNDECRYPTABLE = (
    "the signing keys cannot be decrypted with this IDP_SECRET_KEY: was it changed? "
    "Set the old one back, or `idp keys rotate`"
)


def test_a_changed_secret_is_named_and_the_rotated_key_signs_at_once(make_app, frozen_clock):
    """The secret that encrypts the keys was changed: the stored key cannot sign, and a key
    that waited for the lead time would leave the service unable to sign for an hour."""
    before = make_app()
    with before.app_context():
        old = keys.signing_key("ES256", clock.now()).kid
        keys.sign({"sub": "x"}, alg="ES256", now=clock.now())  # decrypted once by this app
    changed = make_app(SECRET_KEY="the new secret")

    listed = run(changed, "keys", "list")
    assert listed.exit_code == 0
    assert listed.stderr.strip() == f"Warning: {UNDECRYPTABLE}"
    [line] = listed.stdout.splitlines()
    assert line.split()[:3] == [old, "ES256", "signing"] and line.endswith("cannot be decrypted")
    assert json.loads(run(changed, "keys", "list", "--json").stdout)[0]["decrypts"] is False

    rotated = run(changed, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert rotated.stdout.strip().endswith(
        f"published and signing now (no stored ES256 key can sign: {UNDECRYPTABLE})"
    )
    assert changed.test_client().get("/readyz").status_code == 200
    with changed.app_context():
        new = keys.signing_key("ES256", clock.now()).kid
        token = keys.sign({"sub": "x"}, alg="ES256", now=clock.now())
        assert keys.verify(token, clock.now())["sub"] == "x"
        # The old key stays published until what it signed has expired.
        assert {old, new} <= {key["kid"] for key in keys.jwks(clock.now())["keys"]}
    assert new != old
    listed = run(changed, "keys", "list")
    assert listed.stderr == ""  # the old key is retired: it signs nothing any more
    # An instance still on the old secret cannot decrypt the new key: once it looks again, it
    # leaves the traffic.
    frozen_clock.advance(seconds=keys.KEY_RECHECK_INTERVAL.total_seconds() + 1)
    assert before.test_client().get("/readyz").status_code == 503


def test_rotating_a_key_that_signs_still_publishes_it_first(app, frozen_clock):
    with app.app_context():
        keys.signing_key("ES256", clock.now())
    result = run(app, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert "published now, signs from " in result.stdout


def test_revoking_the_only_signing_key_is_refused_until_it_has_a_successor(app):
    with app.app_context():
        kid = keys.signing_key("ES256", clock.now()).kid
    refused = run(app, "keys", "revoke", kid, "--yes")
    assert refused.exit_code != 0
    assert refused.stderr.strip().endswith(
        f"{kid} is the only ES256 key that signs: add its successor first with "
        "`idp keys rotate --alg ES256`, then revoke it"
    ), refused.stderr
    with app.app_context():
        assert kid in [key["kid"] for key in keys.jwks(clock.now())["keys"]]
    unknown = run(app, "keys", "revoke", "no-such-kid", "--yes")
    assert unknown.exit_code != 0 and "no signing key 'no-such-kid'" in unknown.stderr


def test_revoking_asks_first_and_a_no_changes_nothing(app):
    with app.app_context():
        kid = keys.signing_key("ES256", clock.now()).kid
    assert run(app, "keys", "rotate").exit_code == 0
    declined = app.test_cli_runner().invoke(args=["keys", "revoke", kid], input="n\n")
    assert declined.exit_code != 0 and f"Revoke key {kid}?" in declined.stdout
    with app.app_context():
        assert keys.signing_key("ES256", clock.now()).kid == kid
        assert AuditEvent.query.filter_by(event="key.revoked").count() == 0


def test_a_key_revoked_before_it_signs_leaves_the_current_key_signing(app, frozen_clock):
    with app.app_context():
        current = keys.signing_key("ES256", clock.now()).kid
    assert run(app, "keys", "rotate").exit_code == 0
    with app.app_context():
        pending = SigningKey.query.filter(SigningKey.kid != current).one().kid
    assert run(app, "keys", "revoke", pending, "--yes").exit_code == 0
    # Past the moment the revoked key was to take over: the current key signs on, and no key
    # was made on the spot without a lead time.
    frozen_clock.advance(seconds=app.config["KEY_PUBLISH_LEAD_TIME"] + 1)
    with app.app_context():
        now = clock.now()
        assert keys.signing_key("ES256", now).kid == current
        assert [key["kid"] for key in keys.jwks(now)["keys"]] == [current]


def test_a_key_id_that_begins_with_a_dash_is_taken_as_the_key_id(app):
    runner = app.test_cli_runner()
    for args in (["-4G5fJRDEsmG4IjHgm8w"], ["-4G5fJRDEsmG4IjHgm8w", "--yes"], ["--yes", "-4G5f"]):
        result = runner.invoke(args=["keys", "revoke", *args], input="n\n")
        # Not click's usage error (exit 2, "No such option"): the command itself answers.
        assert result.exit_code == 1, result.output
        assert "-4G5f" in result.output and "No such option" not in result.output


def test_a_revoked_key_stops_signing_leaves_jwks_and_is_audited(app, frozen_clock):
    with app.app_context():
        leaked = keys.signing_key("ES256", clock.now()).kid
        token = keys.sign({"sub": "s"}, alg="ES256", now=clock.now(), typ="at+jwt")
        assert keys.verify(token, clock.now())["sub"] == "s"  # cached by this process
    assert run(app, "keys", "rotate").exit_code == 0
    with app.app_context():
        successor = SigningKey.query.filter(SigningKey.kid != leaked).one().kid
    result = app.test_cli_runner().invoke(args=["keys", "revoke", leaked], input="y\n")
    assert result.exit_code == 0, result.output
    assert f"revoked ES256 key {leaked}: no longer published or accepted" in result.stdout
    assert f"ES256 key {successor} signs from now on" in result.stdout
    with app.app_context():
        now = clock.now()  # not a second later: the successor signs without its lead time
        assert [key["kid"] for key in json.loads(keys.jwks_document(now))["keys"]] == [successor]
        with pytest.raises(keys.InvalidJWT):
            keys.verify(token, now)
        fresh = keys.sign({"sub": "s"}, alg="ES256", now=now, typ="at+jwt")
        assert keys._header(fresh)["kid"] == successor
        [event] = AuditEvent.query.filter_by(event="key.revoked").all()
        assert (event.details["kid"], event.details["successor"]) == (leaked, successor)


def test_tokens_signed_by_a_revoked_key_fail_at_userinfo_and_introspection(
    idp, browser, make_rp, frozen_clock
):
    rp = make_rp()
    token = rp.sign_in(browser)["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(idp.url("/userinfo"), headers=bearer, timeout=5).status_code == 200
    with idp.app.app_context():
        leaked = keys.signing_key("ES256", clock.now()).kid
    assert run(idp.app, "keys", "rotate").exit_code == 0
    assert run(idp.app, "keys", "revoke", leaked, "--yes").exit_code == 0
    # The server is another process as far as the keys are concerned: it looks again within
    # the recheck interval.
    frozen_clock.advance(seconds=keys.KEY_RECHECK_INTERVAL.total_seconds() + 1)
    assert requests.get(idp.url("/userinfo"), headers=bearer, timeout=5).status_code == 401
    introspected = requests.post(
        idp.url("/introspect"),
        data={"token": token},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert introspected.json() == {"active": False}
    published = requests.get(idp.url("/jwks.json"), timeout=5).json()["keys"]
    assert leaked not in [key["kid"] for key in published]
