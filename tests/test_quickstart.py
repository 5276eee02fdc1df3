"""The README's operator quick start, read as tests/quickstart.py reads it (`./dev test` runs it
for real, in a fresh venv outside the checkout): what it installs and serves comes from the
package, not from files that only a checkout has."""

import importlib
import tomllib

from tests.quickstart import ROOT, exported, quick_start_commands

COMMANDS = quick_start_commands((ROOT / "README.md").read_text())


def test_the_documented_install_brings_the_production_drivers():
    # `pip install .` then a PostgreSQL URI was a ModuleNotFoundError: psycopg.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {dependency.split("[")[0].split(">")[0] for dependency in project["dependencies"]}
    assert {"psycopg", "redis"} <= required
    assert COMMANDS[0].startswith("pip install .")


def test_the_serving_command_names_only_what_the_package_ships(monkeypatch, tmp_path):
    # The settings module picks a metrics folder when none is set: not for this process.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    [serve] = [command for command in COMMANDS if command.startswith("gunicorn ")]
    words = serve.split("#")[0].split()
    assert words[1] == "-c" and words[2].startswith("python:"), serve
    settings = importlib.import_module(words[2].removeprefix("python:"))
    # gunicorn's own threaded worker: nothing of gunicorn's internals in the product.
    assert settings.worker_class == "gthread"
    module, _, attribute = words[3].partition(":")
    assert module.startswith("idp.") and attribute == "app"
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()


def test_every_placeholder_of_the_exports_gets_a_value_and_production_its_urls():
    [export] = [command for command in COMMANDS if command.startswith("export ")]
    test_bed = {
        "IDP_SECRET_KEY": "s",
        "IDP_AUDIT_KEY": "a",
        "IDP_VONAGE_API_KEY": "k",
        "IDP_VONAGE_API_SECRET": "v",
    }
    values = exported(export, test_bed)
    assert test_bed == {}
    assert values["IDP_ISSUER"].startswith("https://")
    assert values["IDP_PORTAL_URL"].startswith("https://")
    assert values["IDP_MAIL_DEFAULT_SENDER"] == "e:service <no-reply@example.com>"
    assert values["IDP_SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")


def test_the_exports_name_the_mail_port_and_tls_with_their_defaults():
    """A relay on 25 or 465 must be seen to need a change: the port and STARTTLS are in the
    exports, with the values that apply when they are left out."""
    from idp import create_app

    [export] = [command for command in COMMANDS if command.startswith("export ")]
    values = exported(
        export,
        {
            "IDP_SECRET_KEY": "s",
            "IDP_AUDIT_KEY": "a",
            "IDP_VONAGE_API_KEY": "k",
            "IDP_VONAGE_API_SECRET": "v",
        },
    )
    defaults = create_app("testing").config
    assert int(values["IDP_MAIL_PORT"]) == defaults["MAIL_PORT"] == 587
    assert values["IDP_MAIL_USE_TLS"] == "true" and defaults["MAIL_USE_TLS"] is True
