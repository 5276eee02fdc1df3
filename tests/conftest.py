"""Fixtures: an app per test on a real database (SQLite by default, PostgreSQL when
IDP_TEST_DATABASE_URI says so), the file senders' outbox, and a browser-like client."""

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text

from idp import create_app
from idp.platform import clock
from idp.platform.database import dispose_autocommit_pool
from idp.platform.extensions import db
from idp.senders.outbox import read_outbox


def worker_database(uri: str, worker: str) -> str:
    """The database of one pytest-xdist worker: `<database>_<worker>`, created when missing, so
    that parallel test processes never empty each other's tables."""
    url = make_url(uri)
    name = f"{url.database}_{worker}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


if os.environ.get("IDP_TEST_DATABASE_URI") and os.environ.get("PYTEST_XDIST_WORKER"):
    # Set in the environment too: the servers and commands that tests start inherit it.
    os.environ["IDP_TEST_DATABASE_URI"] = worker_database(
        os.environ["IDP_TEST_DATABASE_URI"], os.environ["PYTEST_XDIST_WORKER"]
    )

# Fixtures of the live identity provider (idp, browser, rp, ...) and of the SCIM ordering
# system, for every test file by name; the modules stay importable for their helpers.
pytest_plugins = ["tests.oidc_fixtures", "tests.scim_fixtures"]

POSTGRES_URI = os.environ.get("IDP_TEST_DATABASE_URI")
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory) -> str:
    """A fresh, migrated database for the whole run; tests empty its tables afterwards."""
    if POSTGRES_URI:
        engine = create_engine(POSTGRES_URI)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        uri = POSTGRES_URI
    else:
        uri = f"sqlite:///{tmp_path_factory.mktemp('db') / 'idp.sqlite3'}"
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": uri})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return uri


def empty_tables() -> None:
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # TRUNCATE, because the audit table refuses DELETE (append-only trigger); past the
            # triggers that refuse TRUNCATE too, as the superuser the tests run as.
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            names = ", ".join(table.name for table in db.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture
def make_app(database_uri, tmp_path):
    """Builds an app with extra settings; every app of a test shares its database."""
    apps = []

    def build(**settings):
        config = {
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            **settings,
        }
        app = create_app("testing", config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            if app is apps[0]:
                empty_tables()
            db.engine.dispose()
        dispose_autocommit_pool(app)


@pytest.fixture
def app(make_app):
    # No app context stays pushed: each request must get its own, as in production (a shared
    # one would share `g`, and with it cached CSRF tokens and sessions, across requests).
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


class Clock:
    """Moves the services' clock without sleeping."""

    def __init__(self):
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs) -> None:
        self.offset += timedelta(**kwargs)


@pytest.fixture
def frozen_clock(monkeypatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(clock, "now", moved.now)
    return moved


class StoppedClock(Clock):
    """Stands still but for what a test advances: for tests that count seconds exactly, which
    a loaded machine would otherwise put off by the time it takes."""

    def __init__(self):
        super().__init__()
        self.start = datetime.now(UTC)

    def now(self) -> datetime:
        return self.start + self.offset


@pytest.fixture
def stopped_clock(monkeypatch) -> StoppedClock:
    stopped = StoppedClock()
    monkeypatch.setattr(clock, "now", stopped.now)
    return stopped


class Outbox:
    def __init__(self, directory: Path):
        self.directory = directory

    def mails(self) -> list[dict]:
        return read_outbox(str(self.directory), "mail")

    def sms(self) -> list[dict]:
        return read_outbox(str(self.directory), "sms")

    def last_link(self) -> str:
        """The link of the newest mail that has one (notifications have none)."""
        for mail in self.mails():
            match = re.search(r"https?://\S+/activate/\S+", mail["text"])
            if match:
                return match.group(0)
        raise AssertionError("no activation link in any mail")

    def last_pin(self) -> str:
        match = re.search(r"#(\d{6})$", self.sms()[0]["text"])
        assert match, "no PIN in the newest SMS"
        return match.group(1)


@pytest.fixture
def outbox(app) -> Outbox:
    return Outbox(Path(app.config["OUTBOX_DIR"]))


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def post_form(client, url: str, data: dict, page_url: str | None = None, **kwargs):
    """Like a browser: load the page, take its CSRF token, submit."""
    page = client.get(page_url or url)
    return client.post(url, data={"csrf_token": csrf_token(page.text), **data}, **kwargs)


def invite(app, username="anna", phone="+4915112345678", email=None, name="Anna Admin"):
    result = app.test_cli_runner().invoke(
        args=[
            "users",
            "invite",
            username,
            "--email",
            email or f"{username}@example.com",
            "--phone",
            phone,
            "--name",
            name,
        ]
    )
    assert result.exit_code == 0, result.output
    return result


def activate(app, client, outbox, password=PASSWORD, username="anna"):
    """Invites a user and walks the activation with link, password and SMS PIN."""
    invite(app, username=username)
    link = path_of(outbox.last_link())
    response = post_form(client, link, {"password": password, "password_confirm": password})
    assert response.status_code == 303, response.text
    response = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert response.status_code == 200, response.text
    return link


def login(client, outbox, username="anna", password=PASSWORD, next_path=None):
    data = {"username": username, "password": password}
    if next_path:
        data["next"] = next_path
    response = post_form(client, "/login", data)
    assert response.status_code == 303, response.text
    response = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert response.status_code == 303, response.text
    return response


# --- Real senders: SMTP and an HTTPS fake of Vonage (tests/servers.py) ------------------------


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    from tests.servers import Certificates

    return Certificates.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def _smtp_servers(certificates):
    from tests.servers import SmtpServer

    servers = {
        mode: SmtpServer(certificates, mode).start() for mode in ("starttls", "implicit", "auth")
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def smtp_server(_smtp_servers):
    """aiosmtpd with STARTTLS; `smtp_server.mailbox.messages` holds what arrived."""
    server = _smtp_servers["starttls"]
    server.mailbox.reset()
    yield server
    server.mailbox.reset()


@pytest.fixture
def smtps_server(_smtp_servers):
    """aiosmtpd with implicit TLS (port 465 style)."""
    server = _smtp_servers["implicit"]
    server.mailbox.reset()
    yield server
    server.mailbox.reset()


@pytest.fixture
def smtp_auth_server(_smtp_servers):
    """aiosmtpd with STARTTLS that takes mail only after AUTH (tests.servers.SMTP_USERNAME)."""
    server = _smtp_servers["auth"]
    server.mailbox.reset()
    server.authenticator.attempts.clear()
    yield server
    server.mailbox.reset()


@pytest.fixture(scope="session")
def _vonage_server(certificates):
    from tests.servers import VonageServer

    server = VonageServer(certificates).start()
    yield server
    server.stop()


@pytest.fixture
def vonage(_vonage_server, certificates, monkeypatch):
    """The Vonage fake, reset; requests (inside the SDK) trusts its CA for this test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca_file))
    _vonage_server.reset()
    yield _vonage_server
    _vonage_server.reset()


@pytest.fixture
def real_senders_app(make_app, smtp_server, vonage, certificates):
    """An app that sends mail through aiosmtpd (STARTTLS) and SMS through the Vonage fake."""
    return make_app(**smtp_server.settings(certificates.ca_file), **vonage.settings())
