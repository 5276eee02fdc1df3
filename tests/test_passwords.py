"""The password policy (NIST SP 800-63B) and argon2id hashing."""

import pytest
from argon2 import PasswordHasher, extract_parameters

from idp import create_app
from idp.accounts.models import User
from idp.accounts.passwords import check_policy, hashing
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, login, post_form

USER = {"username": "anna.admin", "email": "a.schmidt@example.com"}


def policy(app, password, confirmation=None):
    """The violation's message in English, or None."""
    with app.test_request_context(headers={"Accept-Language": "en"}):
        violation = check_policy(
            password, password if confirmation is None else confirmation, **USER
        )
        return None if violation is None else str(violation.message)


@pytest.mark.parametrize(
    "password",
    [
        "tqmvzkbrwpxy",  # exactly 12
        "correct horse battery staple",  # only lowercase letters and spaces: no composition rules
        "w" + "ald spaziergang am see " * 3,  # 64+
        "Rheinuferpromenade Nummer 7 " * 9,  # 252 characters
        "🔐🦄 Fahrrad Ölkanne ☕ 漢字",  # any Unicode, emoji included
        "    leading and trailing    ",  # spaces count like any character
    ],
)
def test_policy_accepts(app, password):
    assert policy(app, password) is None


@pytest.mark.parametrize(
    ("password", "complaint"),
    [
        ("tqmvzkbrwpx", "at least 12"),
        ("password1234", "leaked"),
        ("qwertyuiop123", "leaked"),
        ("my ANNA.ADMIN secret", "username"),
        ("shhh a.schmidt here", "username or e-mail"),
        ("x" * 257, "at most 256"),
        ("🔐" * 300, "too long"),
    ],
)
def test_policy_rejects(app, password, complaint):
    message = policy(app, password)
    assert message is not None and complaint in message


def test_policy_rejects_a_different_confirmation(app):
    assert "do not match" in policy(app, "tqmvzkbrwpxy", "tqmvzkbrwpxz")


def test_policy_caps_bytes_before_characters(make_app):
    app = make_app(PASSWORD_MAX_BYTES=100)
    # 30 characters but 120 bytes of UTF-8.
    assert "too long" in policy(app, "🔐" * 30)
    assert policy(app, "tqmvzkbrwpxy" * 8) is None  # 96 bytes


def test_policy_counts_characters_after_nfkc(app):
    # Eleven characters, twelve after NFKC ("ﬁ" becomes "fi"): normalised text counts.
    assert policy(app, "ﬁrst snowzy") is None
    # The confirmation may be typed in another Unicode form of the same text.
    assert policy(app, "Caf\u00e9 am Marktplatz", "Cafe\u0301 am Marktplatz") is None


def test_verify_accepts_nfkc_equivalents(app):
    with app.app_context():
        stored = hashing().hash("Ｐａｓｓｗｏｒｔ im Café")
        assert hashing().verify(stored, "Passwort im Cafe\u0301")
        assert not hashing().verify(stored, "passwort im café")
        assert not hashing().verify(None, "anything")


def test_hashes_are_argon2id(app):
    with app.app_context():
        stored = hashing().hash("tqmvzkbrwpxy")
    assert stored.startswith("$argon2id$")


def test_production_argon2_is_at_least_owasp_minimum(tmp_path, monkeypatch):
    for name in ("IDP_ARGON2_TIME_COST", "IDP_ARGON2_MEMORY_COST_KIB", "IDP_ARGON2_PARALLELISM"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(
        "production",
        {
            "SECRET_KEY": "s" * 40,
            "AUDIT_KEY": "k" * 40,
            "ISSUER": "https://login.example.com",
            "PORTAL_URL": "https://portal.example.com/",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.sqlite3'}",
            "ALLOW_SQLITE": True,
            "VONAGE_API_KEY": "k",
            "VONAGE_API_SECRET": "s",
        },
    )
    hasher = app.extensions["idp.passwords"].hasher
    # OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 at least.
    assert hasher.time_cost >= 2
    assert hasher.memory_cost >= 19 * 1024
    assert hasher.parallelism >= 1
    params = extract_parameters(app.extensions["idp.passwords"].dummy_hash)
    assert params.type.name == "ID" and params.memory_cost >= 19 * 1024


def test_login_rehashes_when_the_parameters_change(make_app, outbox):
    cheap = make_app()
    activate(cheap, cheap.test_client(), outbox)
    with cheap.app_context():
        old = db.session.scalar(db.select(User)).password_hash
    assert extract_parameters(old).time_cost == 1

    stronger = make_app(ARGON2_TIME_COST=2, ARGON2_MEMORY_COST_KIB=128)
    client = stronger.test_client()
    # A failed login does not touch the hash.
    post_form(client, "/login", {"username": "anna", "password": "wrong " + PASSWORD})
    with stronger.app_context():
        assert db.session.scalar(db.select(User)).password_hash == old
    login(client, outbox)
    with stronger.app_context():
        new = db.session.scalar(db.select(User)).password_hash
    assert new != old
    assert extract_parameters(new).time_cost == 2
    assert extract_parameters(new).memory_cost == 128
    assert PasswordHasher().verify(new, PASSWORD)
