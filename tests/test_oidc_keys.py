"""The signing keys as the verifiers see them: a key that another process rotated in is found at
once, and tokens with unknown kids cannot force more than one reload of the keys per interval."""

import base64
import json
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from joserfc import jwt

from idp.oidc import keys
from idp.platform import clock
from idp.platform.extensions import db


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
    # However slow this machine: the keys read stay fresh by the monotonic clock meanwhile.
    monkeypatch.setattr(keys, "KEY_RECHECK_INTERVAL", timedelta(hours=1))
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
        keys.sign({"sub": "s"}, alg="ES256", now=now + timedelta(milliseconds=100))
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
        assert keys.verify(token, now + timedelta(milliseconds=100))["sub"] == "s"


def test_requests_with_random_kids_cause_at_most_one_reload(idp, reloads, monkeypatch):
    # However slow this machine: all the requests fall into one interval, and none into the
    # regular reading again of keys that have been kept for a second.
    monkeypatch.setattr(keys, "UNKNOWN_KID_RELOAD_INTERVAL", timedelta(hours=1), raising=False)
    monkeypatch.setattr(keys, "KEY_RECHECK_INTERVAL", timedelta(hours=1), raising=False)
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


def test_a_caller_with_an_old_moment_signs_with_the_successor_once_the_interval_is_over(
    app, make_app, monkeypatch
):
    """The logout poller signs a batch at one moment: the keys it read are as old as the
    monotonic clock says, not as its `now`; what `idp keys revoke` waits for holds for it too."""
    monkeypatch.setattr(keys, "KEY_RECHECK_INTERVAL", timedelta(milliseconds=200))
    with app.app_context():
        moment = clock.now()
        leaked = keys._header(keys.sign({"sub": "s"}, alg="ES256", now=moment))["kid"]
        db.session.remove()
    operator = make_app()  # another process: this one's cache knows nothing of it
    runner = operator.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert runner.invoke(args=["keys", "revoke", leaked, "--yes"]).exit_code == 0
    with app.app_context():
        token = keys.sign({"sub": "s"}, alg="ES256", now=moment)
        assert keys._header(token)["kid"] != leaked
        assert leaked not in keys.jwks_document(moment).decode()
