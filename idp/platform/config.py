"""Loading and checking the configuration: config/default.py, then the file of the chosen
environment, then IDP_* environment variables, then explicit overrides (tests)."""

import difflib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from flask import Config, Flask

from idp.errors import ConfigurationError
from idp.platform import network
from idp.platform.resources import resource_dir

ENVIRONMENTS = ("development", "testing", "production")
DEV_SENDERS = ("console", "file")


def load_config(app: Flask, environment: str, overrides: Mapping | None) -> None:
    if environment not in ENVIRONMENTS:
        raise ConfigurationError(
            f"IDP_CONFIG must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}"
        )
    config_dir = resource_dir("config")
    defaults = Config(app.root_path)
    defaults.from_pyfile(str(config_dir / "default.py"))
    app.config.update(defaults)
    app.config.from_pyfile(str(config_dir / f"{environment}.py"))
    check_setting_names(os.environ, app.config)
    app.config.from_prefixed_env("IDP")
    if overrides:
        app.config.update(overrides)
    app.config["ENVIRONMENT"] = environment
    _fill_defaults(app)
    check_kinds(app.config, defaults)
    check_config(app.config)


# The IDP_* variables that the project reads itself, outside Flask's configuration. Every other
# IDP_* variable must name a setting: a misspelt one would be silently ignored.
NOT_SETTINGS = frozenset(
    {
        # Picks the environment (development, testing, production) before any setting is read;
        # also read by idp/gunicorn_conf.py, the Dockerfile, the Helm chart and `./dev demo`.
        "IDP_CONFIG",
        # Flask's instance folder (SQLite file, outbox), fixed before the configuration loads:
        # create_app, the metrics server, the Dockerfile, the Helm chart, bench/run.py.
        "IDP_INSTANCE_PATH",
        # The PostgreSQL database of the test suite (tests/conftest.py, `./dev test`): set in the
        # environment of the pytest process, and so of every app the tests build.
        "IDP_TEST_DATABASE_URI",
        # How many test processes `./dev test` runs (pytest-xdist; default 2).
        "IDP_TEST_PROCESSES",
        # The drain file (idp.platform.drain), read by gunicorn's hooks and /readyz alike;
        # set by the Helm chart.
        "IDP_DRAIN_FILE",
    }
)


def check_setting_names(environ: Mapping[str, str], settings: Mapping) -> None:
    """Every IDP_* variable names a setting (or one of NOT_SETTINGS): IDP_MAIL_PROT=25 must
    stop the start, not leave the mail port at its default."""
    for variable in sorted(environ):
        if not variable.startswith("IDP_") or variable in NOT_SETTINGS:
            continue
        # IDP_A__B sets the key B of the setting A (Flask's from_prefixed_env).
        name = variable.removeprefix("IDP_").split("__")[0]
        if name in settings:
            continue
        guess = difflib.get_close_matches(name, [str(known) for known in settings], n=1)
        hint = f"did you mean IDP_{guess[0]}?" if guess else "config/default.py lists them all"
        raise ConfigurationError(f"{variable} names no setting: {hint}")


def check_kinds(config: Mapping, defaults: Mapping) -> None:
    """Each setting is of the kind its default is: IDP_PIN_LIFETIME=abc must stop the start,
    not the first PIN hours later."""
    for name, default in defaults.items():
        value = config[name]
        if isinstance(default, bool):
            wrong, kind = not isinstance(value, bool), "true or false"
        elif isinstance(default, int | float):
            wrong = isinstance(value, bool) or not isinstance(value, int | float)
            kind = "a number"
        elif isinstance(default, str) and is_rate_limit(default):
            wrong, kind = not (isinstance(value, str) and is_rate_limit(value)), 'like "10 per day"'
        else:
            continue
        if wrong:
            raise ConfigurationError(f"IDP_{name} must be {kind}, not {value!r}")


def is_rate_limit(text: str) -> bool:
    from limits import parse_many

    try:
        return bool(parse_many(text))
    except ValueError:
        return False


def _fill_defaults(app: Flask) -> None:
    instance = Path(app.instance_path)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'idp.sqlite3'}"
    if not app.config.get("OUTBOX_DIR"):
        app.config["OUTBOX_DIR"] = str(instance / "outbox")
    if app.config.get("ISSUER"):
        app.config["ISSUER"] = app.config["ISSUER"].rstrip("/")
    countries = app.config["SMS_ALLOWED_COUNTRIES"]
    if isinstance(countries, str):  # IDP_SMS_ALLOWED_COUNTRIES=DE,AT
        app.config["SMS_ALLOWED_COUNTRIES"] = [c.strip().upper() for c in countries.split(",")]
    factors = app.config["SECOND_FACTORS"]
    if isinstance(factors, str):  # IDP_SECOND_FACTORS=sms,passkey
        app.config["SECOND_FACTORS"] = [f.strip() for f in factors.split(",") if f.strip()]


def check_config(config: Mapping) -> None:
    if not config.get("SECRET_KEY"):
        raise ConfigurationError("IDP_SECRET_KEY is not set: refusing to start without it")
    if config["MAIL_USE_TLS"] and config["MAIL_USE_SSL"]:
        raise ConfigurationError("IDP_MAIL_USE_TLS and IDP_MAIL_USE_SSL exclude each other")
    check_database_driver(config["SQLALCHEMY_DATABASE_URI"])
    for setting in PUBLIC_URLS:
        if not config.get(setting):
            raise ConfigurationError(f"IDP_{setting} is not set: {PUBLIC_URLS[setting]}")
    check_issuer(str(config["ISSUER"]))
    check_logout_schedule(config)
    check_lockout_limit(config)
    if config["ENVIRONMENT"] == "production":
        check_production(config)


def check_logout_schedule(config: Mapping) -> None:
    """A pause of 0 would retry a relying party that is down as fast as the loop runs."""
    first, largest = config["LOGOUT_RETRY_FIRST_DELAY"], config["LOGOUT_RETRY_MAX_DELAY"]
    if not 0 < first <= largest:
        raise ConfigurationError(
            "IDP_LOGOUT_RETRY_FIRST_DELAY must be above 0 and at most IDP_LOGOUT_RETRY_MAX_DELAY"
        )
    if config["LOGOUT_GIVE_UP_AFTER"] <= 0 or config["LOGOUT_POLL_INTERVAL"] < 0:
        raise ConfigurationError(
            "IDP_LOGOUT_GIVE_UP_AFTER must be above 0 and IDP_LOGOUT_POLL_INTERVAL not below 0"
        )


def check_lockout_limit(config: Mapping) -> None:
    """NIST SP 800-63B-4 3.2.2 allows at most 100 consecutive failures on one account."""
    limit = config["LOCKOUT_HARD_LIMIT"]
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ConfigurationError("IDP_LOCKOUT_HARD_LIMIT must be a whole number from 1 to 100")


def check_production(config: Mapping) -> None:
    """What production refuses that development and testing allow."""
    if len(str(config["SECRET_KEY"])) < 32:
        raise ConfigurationError("IDP_SECRET_KEY must be at least 32 characters in production")
    if not config.get("AUDIT_KEY"):
        raise ConfigurationError(
            "IDP_AUDIT_KEY is not set: refusing to start without the key of the audit trail"
        )
    if len(str(config["AUDIT_KEY"])) < 32:
        raise ConfigurationError("IDP_AUDIT_KEY must be at least 32 characters in production")
    for setting in ("MAIL_BACKEND", "SMS_BACKEND"):
        if config[setting] in DEV_SENDERS:
            raise ConfigurationError(
                f"IDP_{setting}={config[setting]} is for development only: "
                "refusing to start in production"
            )
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") and not config["ALLOW_SQLITE"]:
        raise ConfigurationError(
            "SQLite in production needs IDP_ALLOW_SQLITE=true; "
            "set IDP_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://..."
        )
    if not config["ALLOW_LOCAL_URLS"]:
        for setting in PUBLIC_URLS:
            check_public_url(setting, str(config[setting]))
    if config["DEV_PAGES"]:
        raise ConfigurationError("IDP_DEV_PAGES cannot be on in production")


def check_database_driver(uri: str) -> None:
    """The database URL names a database and a driver that are installed. Checked before the
    first connection, whose failure would otherwise be a traceback; the URL itself is never
    repeated (it carries the password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    setting = "IDP_SQLALCHEMY_DATABASE_URI"
    escape = "percent-encode @, :, / and % in the password (%40, %3A, %2F, %25)"
    try:
        url = make_url(uri)
    except ArgumentError:
        raise ConfigurationError(
            f"{setting} is not a database URL (postgresql+psycopg://user:password@host/db)"
        ) from None
    except ValueError:  # a port that is no number: often the rest of a password with a ':'
        raise ConfigurationError(f"{setting} has a port that is no number; {escape}") from None
    if "@" in (url.host or ""):
        # The password's own @ ended it early, and its rest would be taken for the host (and
        # shown as such by the driver's "failed to resolve host" message).
        raise ConfigurationError(f"{setting} has an @ in its host; {escape}")
    try:
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        hint = ""
        if url.drivername.startswith("postgres"):
            # postgres:// is what libpq, Heroku and many guides write; SQLAlchemy has no such name.
            hint = "; use postgresql+psycopg://user:password@host/db"
        raise ConfigurationError(
            f"{setting} names a database that is not known: {url.drivername!r}{hint}"
        ) from None
    except ImportError as error:
        raise ConfigurationError(
            f"{setting} needs the Python module {error.name!r} ({url.drivername}), which is not "
            "installed"
        ) from None


# The URLs that people and relying parties are sent to, and why each is needed.
PUBLIC_URLS = {
    "ISSUER": "discovery, tokens and every link in a mail are built from it",
    "PORTAL_URL": "the activation mail links customers to the e:service portal with it",
}


def check_public_url(setting: str, url: str) -> None:
    """Production's URLs are reached from customers' browsers and mail clients: https, and a
    host other than this machine (a loopback link in a mail leads every customer nowhere),
    however it is spelled; no user info (user:password@ in a link is a phishing trick)."""
    lab = "IDP_ALLOW_LOCAL_URLS=true allows it for a lab or a test bed"
    if not url.startswith("https://"):
        raise ConfigurationError(
            f"IDP_{setting} must be an https:// URL in production, not {url!r} ({lab})"
        )
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigurationError(f"IDP_{setting} must not contain user info, not {url!r}")
    if is_local_host(parts.hostname or ""):
        raise ConfigurationError(
            f"IDP_{setting} must not point at loopback or localhost in production, "
            f"not {url!r} ({lab})"
        )


def check_issuer(issuer: str) -> None:
    """The issuer is compared character for character by relying parties, and OpenID Connect
    Discovery allows no query or fragment in it; user info has no place in it either."""
    parts = urlsplit(issuer)
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise ConfigurationError(
            f"IDP_ISSUER must be a URL without user info, query or fragment, not {issuer!r}"
        )


# Names that resolvers answer with the loopback address, whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain")
# "This network": 0.0.0.0 and, on Linux, every 0.x.y.z reach this machine.
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def is_local_host(host: str) -> bool:
    """Whether host is this machine, in any spelling a resolver accepts: a trailing dot,
    IPv4 shorthand (127.1, 2130706433, 0x7f000001, 0), IPv6 carrying a loopback IPv4
    address (::ffff:127.0.0.1, ::127.0.0.1)."""
    name = host.lower().removesuffix(".")
    if not name or name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    address = network.literal_address(name)
    if address is None:
        return False
    return any(
        reached.is_loopback or reached.is_unspecified or reached in THIS_NETWORK
        for reached in network.addresses_reached(address)
    )


def environment_from_env() -> str:
    return os.environ.get("IDP_CONFIG", "production")
