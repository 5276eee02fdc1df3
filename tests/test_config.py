"""Configuration: production refuses to start when it would be unsafe, and IDP_* environment
variables override the files in config/."""

import json
import os
import subprocess
import sys

import click
import pytest

from idp import create_app
from idp.cli import app_for_cli
from idp.errors import ConfigurationError


@pytest.fixture
def clean_env(monkeypatch):
    """No IDP_* variables from the shell that runs the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("IDP_") and name != "IDP_TEST_DATABASE_URI":
            monkeypatch.delenv(name)
    return monkeypatch


def production_settings(tmp_path, **changes):
    settings = {
        "SECRET_KEY": "s" * 40,
        "AUDIT_KEY": "a" * 40,
        "ISSUER": "https://login.example.com",
        "PORTAL_URL": "https://portal.example.com/",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "ALLOW_SQLITE": True,
        "VONAGE_API_KEY": "key",
        "VONAGE_API_SECRET": "secret",
    }
    settings.update(changes)
    return {k: v for k, v in settings.items() if v is not None}


def test_production_starts_with_a_safe_configuration(clean_env, tmp_path):
    app = create_app("production", production_settings(tmp_path))
    assert app.config["HSTS"] and app.config["SESSION_COOKIE_SECURE"]
    assert app.config["AUTH_COOKIE_NAME"].startswith("__Host-")
    assert app.config["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert not app.config["DEV_PAGES"] and not app.testing


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"SECRET_KEY": None}, "IDP_SECRET_KEY"),
        ({"SECRET_KEY": "too short"}, "IDP_SECRET_KEY"),
        ({"MAIL_BACKEND": "console"}, "IDP_MAIL_BACKEND"),
        ({"MAIL_BACKEND": "file"}, "IDP_MAIL_BACKEND"),
        ({"SMS_BACKEND": "console"}, "IDP_SMS_BACKEND"),
        ({"SMS_BACKEND": "file"}, "IDP_SMS_BACKEND"),
        ({"ALLOW_SQLITE": None}, "IDP_ALLOW_SQLITE"),
        ({"ISSUER": "http://login.example.com"}, "IDP_ISSUER"),
        ({"ISSUER": None}, "IDP_ISSUER is not set"),
        ({"ISSUER": "https://127.0.0.1:5000"}, "IDP_ISSUER"),
        ({"ISSUER": "https://localhost"}, "IDP_ISSUER"),
        ({"PORTAL_URL": None}, "IDP_PORTAL_URL is not set"),
        ({"PORTAL_URL": ""}, "IDP_PORTAL_URL is not set"),
        ({"PORTAL_URL": "http://portal.example.com/"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": "http://127.0.0.1:5001/"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": "https://127.1.2.3/"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": "https://[::1]:5001/"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": "https://0.0.0.0/"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": "https://portal.localhost/"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": "https:///"}, "IDP_PORTAL_URL"),
        ({"PORTAL_URL": None, "ALLOW_LOCAL_URLS": True}, "IDP_PORTAL_URL is not set"),
        # This machine in the spellings that resolvers accept.
        *[
            ({"ISSUER": issuer}, "IDP_ISSUER must not point at loopback")
            for issuer in (
                "https://127.1",
                "https://2130706433",
                "https://0x7f000001",
                "https://0",
                "https://0.1.2.3",
                "https://[::ffff:127.0.0.1]",
                "https://[::127.0.0.1]",
                "https://localhost.",
                "https://LocalHost",
                "https://127.0.0.1.",
                "https://localhost.localdomain",
                "https://portal.localhost./",
            )
        ],
        ({"PORTAL_URL": "https://user:pw@portal.example.com/"}, "IDP_PORTAL_URL must not"),
        ({"ISSUER": "https://login.example.com?tenant=a"}, "IDP_ISSUER must be a URL without"),
        ({"ISSUER": "https://login.example.com/#x"}, "IDP_ISSUER must be a URL without"),
        ({"ISSUER": "https://evil@login.example.com"}, "IDP_ISSUER must"),
        ({"ISSUER": "http://a@127.0.0.1", "ALLOW_LOCAL_URLS": True}, "IDP_ISSUER must be a URL"),
        ({"VONAGE_API_SECRET": None}, "IDP_VONAGE_API_SECRET"),
        ({"MAIL_USE_SSL": True}, "IDP_MAIL_USE_SSL"),
        ({"DEV_PAGES": True}, "IDP_DEV_PAGES"),
        ({"AUDIT_KEY": None}, "IDP_AUDIT_KEY is not set"),
        ({"AUDIT_KEY": "a" * 31}, "IDP_AUDIT_KEY must be at least 32 characters"),
    ],
)
def test_production_refuses_unsafe_settings(clean_env, tmp_path, changes, complaint):
    with pytest.raises(ConfigurationError) as refused:
        create_app("production", production_settings(tmp_path, **changes))
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    "issuer", ["https://127.example.com", "https://0x7f.example", "https://[2001:db8::1]"]
)
def test_hosts_that_only_look_numeric_are_not_taken_for_this_machine(clean_env, tmp_path, issuer):
    app = create_app("production", production_settings(tmp_path, ISSUER=issuer))
    assert app.config["ISSUER"] == issuer


def test_a_lab_may_use_local_urls_when_it_says_so(clean_env, tmp_path):
    local = {"ISSUER": "http://127.0.0.1:5000", "PORTAL_URL": "http://localhost:5001/"}
    app = create_app("production", production_settings(tmp_path, ALLOW_LOCAL_URLS=True, **local))
    assert (app.config["ISSUER"], app.config["PORTAL_URL"]) == tuple(local.values())


def test_every_command_refuses_production_without_the_portal_url(clean_env, tmp_path):
    """The activation mail would link customers to http://127.0.0.1:5001/: nothing starts."""
    environment = {
        f"IDP_{name}": value if isinstance(value, str) else json.dumps(value)
        for name, value in production_settings(tmp_path, PORTAL_URL=None).items()
    }
    done = subprocess.run(
        [sys.executable, "-m", "idp", "users", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environment, "IDP_CONFIG": "production"},
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: IDP_PORTAL_URL is not set")
    environment["IDP_ALLOW_LOCAL_URLS"] = "true"
    environment["IDP_PORTAL_URL"] = "http://127.0.0.1:5001/"
    done = subprocess.run(
        [sys.executable, "-m", "idp", "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environment, "IDP_CONFIG": "production"},
    )
    assert done.returncode == 0, done.stderr


def test_unknown_environment_is_refused(clean_env):
    with pytest.raises(ConfigurationError):
        create_app("staging")


def test_environment_variables_override_the_files(clean_env, tmp_path):
    clean_env.setenv("IDP_SECRET_KEY", "e" * 40)
    clean_env.setenv("IDP_AUDIT_KEY", "k" * 40)
    clean_env.setenv("IDP_ISSUER", "https://sso.example.net/")
    clean_env.setenv("IDP_PORTAL_URL", "https://portal.example.net/")
    clean_env.setenv("IDP_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    clean_env.setenv("IDP_ALLOW_SQLITE", "true")
    clean_env.setenv("IDP_VONAGE_API_KEY", "k")
    clean_env.setenv("IDP_VONAGE_API_SECRET", "s")
    clean_env.setenv("IDP_PIN_LIFETIME", "120")
    clean_env.setenv("IDP_MAIL_USE_TLS", "false")
    clean_env.setenv("IDP_MAIL_USE_SSL", "true")
    clean_env.setenv("IDP_MAIL_PORT", "465")
    clean_env.setenv("IDP_PRODUCT_NAME", "cloud.phone")
    clean_env.setenv("IDP_CONFIG", "production")
    app = create_app()
    assert app.config["ENVIRONMENT"] == "production"
    assert app.config["SECRET_KEY"] == "e" * 40
    assert app.config["ISSUER"] == "https://sso.example.net"
    assert app.config["PORTAL_URL"] == "https://portal.example.net/"
    assert app.config["PIN_LIFETIME"] == 120
    assert app.config["MAIL_USE_TLS"] is False and app.config["MAIL_USE_SSL"] is True
    assert app.config["MAIL_PORT"] == 465
    assert app.config["PRODUCT_NAME"] == "cloud.phone"


def test_environment_variable_chooses_the_environment(clean_env):
    clean_env.setenv("IDP_CONFIG", "development")
    assert create_app().config["ENVIRONMENT"] == "development"


def test_production_is_the_default_and_refuses_without_secret(clean_env):
    with pytest.raises(ConfigurationError) as refused:
        create_app()
    assert "IDP_SECRET_KEY" in str(refused.value)


def test_cli_reports_a_bad_configuration_in_one_line(clean_env):
    with pytest.raises(click.ClickException) as refused:
        app_for_cli()
    assert "IDP_SECRET_KEY" in refused.value.message
    assert "\n" not in refused.value.message


@pytest.mark.parametrize("args", [["--help"], []], ids=["--help", "no arguments"])
def test_cli_help_lists_the_commands_without_a_configuration(clean_env, args):
    """An operator's first `idp --help` (or plain `idp`) on a machine not set up yet: the
    operator's commands, and at the end a note on what is missing; no error line, no
    traceback, none of Flask's options and commands for developers."""
    done = subprocess.run(
        [sys.executable, "-m", "idp", *args], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
    for command in ("users", "clients", "keys", "audit", "demo", "db"):
        assert f"\n  {command} " in done.stdout
    for developers in ("--env-file", "--app", "--debug", "  run ", "  shell ", "  routes "):
        assert developers not in done.stdout
    assert "--version" in done.stdout
    note = " ".join(done.stdout.split("\n\n")[-1].split())
    assert note == "Configuration incomplete: " + MISSING_SECRET
    assert "Traceback" not in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "idp", "users", "list"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: " + MISSING_SECRET


MISSING_SECRET = "IDP_SECRET_KEY is not set: refusing to start without it"


def test_cli_help_of_a_complete_configuration_hides_the_developers_commands(clean_env, tmp_path):
    environment = {"IDP_CONFIG": "development", "IDP_INSTANCE_PATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "idp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environment},
    )
    assert (done.returncode, done.stderr) == (0, "")
    commands = done.stdout.split("Commands:\n")[1].split("\n\n")[0]
    assert [line.split()[0] for line in commands.splitlines()] == [
        "audit",
        "clients",
        "db",
        "demo",
        "keys",
        "logout",
        "users",
    ]
    assert "Configuration incomplete" not in done.stdout
    # Still there for developers.
    done = subprocess.run(
        [sys.executable, "-m", "idp", "routes"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environment},
    )
    assert done.returncode == 0 and "/.well-known/openid-configuration" in done.stdout


def test_cli_version_is_the_identity_providers():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "idp", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"idp {project['project']['version']}"


# --- What an operator's command says when the world around it fails --------------------------

DATABASE_PASSWORD = "hunter2-db-password"


def refusing_postgres_uri() -> str | None:
    from sqlalchemy.engine import make_url

    from tests.conftest import POSTGRES_URI

    if not POSTGRES_URI:
        return None
    uri = make_url(POSTGRES_URI).set(username="nobody-here", password=DATABASE_PASSWORD)
    return uri.render_as_string(hide_password=False)


def postgres_uri_with_the_password_for_the_user() -> str | None:
    """A mistake an operator makes: the password where the user name belongs, which the
    server's "role ... does not exist" repeats."""
    from sqlalchemy.engine import make_url

    from tests.conftest import POSTGRES_URI

    if not POSTGRES_URI:
        return None
    uri = make_url(POSTGRES_URI).set(username=DATABASE_PASSWORD, password=None)
    return uri.render_as_string(hide_password=False)


def broken_surroundings(tmp_path) -> dict:
    from idp.demo.servers import free_port

    closed = free_port()
    return {
        "missing driver": (
            {"SQLALCHEMY_DATABASE_URI": f"postgresql+pg8000://idp:{DATABASE_PASSWORD}@db/idp"},
            "Error: IDP_SQLALCHEMY_DATABASE_URI needs the Python module 'pg8000'",
        ),
        "unreachable database": (
            {
                "SQLALCHEMY_DATABASE_URI": (
                    f"postgresql+psycopg://idp:{DATABASE_PASSWORD}@127.0.0.1:{closed}/idp"
                )
            },
            "Error: database (IDP_SQLALCHEMY_DATABASE_URI): connection failed",
        ),
        "database that cannot be opened": (
            {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'no-such-folder' / 'idp.db'}"},
            "Error: database (IDP_SQLALCHEMY_DATABASE_URI): ",
        ),
        "refusing database": (
            {"SQLALCHEMY_DATABASE_URI": refusing_postgres_uri()},
            "Error: database (IDP_SQLALCHEMY_DATABASE_URI): connection failed",
        ),
        "password for the user": (
            {"SQLALCHEMY_DATABASE_URI": postgres_uri_with_the_password_for_the_user()},
            "Error: database (IDP_SQLALCHEMY_DATABASE_URI): connection failed",
        ),
        # A password with an unescaped @ and : (p@ss:hunter2-...): the rest is no port.
        "password with @ and :": (
            {
                "SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://idp:p@ss:{DATABASE_PASSWORD}@db/idp"
            },
            "Error: IDP_SQLALCHEMY_DATABASE_URI has a port that is no number; percent-encode",
        ),
        # ... with an unescaped @ only: the driver would try to resolve the rest as the host.
        "password with @": (
            {
                "SQLALCHEMY_DATABASE_URI": (
                    f"postgresql+psycopg://idp:p@ss{DATABASE_PASSWORD}@127.0.0.1:{closed}/idp"
                )
            },
            "Error: IDP_SQLALCHEMY_DATABASE_URI has an @ in its host; percent-encode",
        ),
        "database without schema": ({}, "Error: the database has no schema or an old one"),
        "not a database URL": (
            {"SQLALCHEMY_DATABASE_URI": "db.example.com/idp"},
            "Error: IDP_SQLALCHEMY_DATABASE_URI is not a database URL",
        ),
        "unknown storage": (
            {"REDIS_URL": f"rediss+nothing://:{DATABASE_PASSWORD}@127.0.0.1/0"},
            "Error: IDP_REDIS_URL (or IDP_RATELIMIT_STORAGE_URI) cannot be used",
        ),
        # What libpq, Heroku and many guides write: SQLAlchemy does not know it.
        "postgres:// URL": (
            {"SQLALCHEMY_DATABASE_URI": f"postgres://idp:{DATABASE_PASSWORD}@db/idp"},
            "Error: IDP_SQLALCHEMY_DATABASE_URI names a database that is not known: 'postgres'; "
            "use postgresql+psycopg://",
        ),
        "Redis address without scheme": (
            {"REDIS_URL": "localhost:6379"},
            "Error: IDP_REDIS_URL (or IDP_RATELIMIT_STORAGE_URI) cannot be used: it needs a URL "
            "like redis://host:port/db",
        ),
        "word for a number": ({"PIN_LIFETIME": "five minutes"}, "Error: IDP_PIN_LIFETIME"),
        "word for a switch": ({"METRICS_ENABLED": "yes"}, "Error: IDP_METRICS_ENABLED"),
        "malformed limit": ({"SMS_LIMIT_PER_NUMBER": "ten"}, "Error: IDP_SMS_LIMIT_PER_NUMBER"),
        "unknown log level": ({"LOG_LEVEL": "LOUD"}, "Error: a setting is not valid"),
        "unknown SMS sender": ({"SMS_BACKEND": "pigeon"}, "Error: IDP_SMS_BACKEND"),
    }


@pytest.mark.parametrize(
    "broken",
    [
        "missing driver",
        "unreachable database",
        "database that cannot be opened",
        "refusing database",
        "password for the user",
        "password with @ and :",
        "password with @",
        "database without schema",
        "not a database URL",
        "unknown storage",
        "postgres:// URL",
        "Redis address without scheme",
        "word for a number",
        "word for a switch",
        "malformed limit",
        "unknown log level",
        "unknown SMS sender",
    ],
)
def test_every_failure_around_a_command_is_one_line_without_traceback(clean_env, tmp_path, broken):
    changes, complaint = broken_surroundings(tmp_path)[broken]
    if None in changes.values():
        pytest.skip("needs PostgreSQL (IDP_TEST_DATABASE_URI)")
    settings = production_settings(tmp_path) | changes
    environment = {
        f"IDP_{name}": value if isinstance(value, str) else json.dumps(value)
        for name, value in settings.items()
    }
    done = subprocess.run(
        [sys.executable, "-m", "idp", "users", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environment, "IDP_CONFIG": "production"},
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(complaint), line
    assert "hunter2" not in done.stderr


def test_redis_down_under_a_command_is_one_line(clean_env, tmp_path, capsys):
    from flask.cli import with_appcontext

    from idp.cli import operator_group
    from idp.demo.servers import free_port
    from idp.platform.ratelimit import counters

    settings = production_settings(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    for name, value in settings.items():
        clean_env.setenv(f"IDP_{name}", value if isinstance(value, str) else json.dumps(value))
    group = operator_group()

    @group.command("count")
    @with_appcontext
    def count():
        counters().incr("probe", 60)

    with pytest.raises(SystemExit) as exited:
        group.main(["count"], prog_name="idp")
    assert exited.value.code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("Error: Redis (IDP_REDIS_URL) is not usable: "), line


# --- A misspelt setting stops the start -------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "complaint"),
    [
        ("IDP_MAIL_PROT=25", "Error: IDP_MAIL_PROT names no setting: did you mean IDP_MAIL_PORT?"),
        ("IDP_SECRETKEY=x", "Error: IDP_SECRETKEY names no setting: did you mean IDP_SECRET_KEY?"),
        ("IDP_NOTHING_LIKE_IT=1", "Error: IDP_NOTHING_LIKE_IT names no setting: config/default.py"),
    ],
)
@pytest.mark.parametrize("environment", ["production", "development"])
def test_an_unknown_setting_name_is_refused_with_a_guess(
    clean_env, variable, complaint, environment
):
    name, _, value = variable.partition("=")
    done = subprocess.run(
        [sys.executable, "-m", "idp", "users", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, name: value, "IDP_CONFIG": environment},
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(complaint), line


def test_the_names_the_project_reads_itself_are_not_taken_for_settings(clean_env, tmp_path):
    clean_env.setenv("IDP_CONFIG", "development")
    clean_env.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    clean_env.setenv("IDP_TEST_DATABASE_URI", "postgresql+psycopg://postgres@127.0.0.1/x")
    clean_env.setenv("IDP_MAIL_PORT", "25")
    assert create_app().config["MAIL_PORT"] == 25


def test_every_idp_variable_the_project_sets_is_a_setting_or_read_outside_the_config():
    """The Dockerfile, the chart, `./dev`, the benchmark and the quick start set IDP_* names:
    each must be a setting or be known as read elsewhere, or the start would be refused."""
    import re
    from pathlib import Path

    from idp.platform.config import NOT_SETTINGS

    root = Path(__file__).parents[1]
    app = create_app("testing")
    places = [
        root / "Dockerfile",
        root / "dev",
        root / "README.md",
        *root.glob("helm/templates/*"),
        *root.glob("helm/values*.yaml"),
        *root.glob("bench/*.py"),
        *root.glob("config/*.py"),
        *(
            root / "idp" / name
            for name in ("gunicorn_conf.py", "platform/metrics.py", "__init__.py")
        ),
        root / "tests" / "quickstart.py",
        root / "tests" / "conftest.py",
    ]
    named = {
        name
        for place in places
        for name in re.findall(r"\bIDP_[A-Z0-9_]*[A-Z0-9]\b", place.read_text())
    }
    unknown = {name for name in named - NOT_SETTINGS if name.removeprefix("IDP_") not in app.config}
    assert unknown == set()


def test_the_database_uris_own_options_stay_beside_the_timeouts():
    """An operator's search_path (or connect timeout) in the URI is not replaced by ours."""
    from idp.platform.database import server_timeouts

    config = {"DATABASE_CONNECT_TIMEOUT": 3, "DATABASE_STATEMENT_TIMEOUT": 20}
    plain = "postgresql+psycopg://idp@db/idp"
    assert server_timeouts(config, plain) == {
        "connect_timeout": 3,
        "options": "-c statement_timeout=20000",
    }
    own = f"{plain}?options=-csearch_path%3Didp&connect_timeout=9"
    assert server_timeouts(config, own) == {
        "options": "-csearch_path=idp -c statement_timeout=20000"
    }
    with_timeout = f"{plain}?options=-c%20statement_timeout%3D5000"
    assert server_timeouts(config, with_timeout) == {"connect_timeout": 3}
