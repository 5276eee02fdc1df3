"""`idp demo`: one demo at a time, a restart that knows how far the journey got, a way to start
over, portals that speak the browser's language, and the journey between them over HTTP:
single sign-on, cancel, sign-out; `./dev` installs only what changed. (The journey in a
browser: tests/browser/test_demo_journey.py.)"""

import html
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import click
import pytest
import requests

from idp.accounts.models import User
from idp.demo import (
    DemoPorts,
    NextStep,
    build_demo,
    next_step_text,
    reset_demo_data,
    serve_demo,
)
from idp.demo.relying_party import create_relying_party
from idp.demo.servers import free_port
from idp.oidc.models import Client
from idp.platform.extensions import db
from tests.conftest import PASSWORD, csrf_token, path_of, post_form
from tests.servers import HOST

ROOT = Path(__file__).resolve().parent.parent


def free_ports() -> DemoPorts:
    return DemoPorts(free_port(), free_port(), free_port())


def demo_process(instance: Path, ports: DemoPorts, *options: str) -> subprocess.Popen:
    """`idp demo` as a developer starts it, in its own instance folder (database, outbox)."""
    environment = {
        **os.environ,
        "IDP_CONFIG": "development",
        "IDP_INSTANCE_PATH": str(instance),
        "PYTHONUNBUFFERED": "1",
    }
    for name in list(environment):
        if name.startswith("IDP_") and name not in ("IDP_CONFIG", "IDP_INSTANCE_PATH"):
            del environment[name]
    command = [sys.executable, "-m", "idp", "demo", "--port", str(ports.idp)]
    command += ["--eservice-port", str(ports.eservice), "--cloudphone-port", str(ports.cloudphone)]
    command += options
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_running(process: subprocess.Popen) -> str:
    """The demo's output up to "The demo is running"; fails if it ends before."""
    output = []
    for line in process.stdout:
        output.append(line)
        if "The demo is running" in line:
            return "".join(output)
    pytest.fail(f"the demo did not start: {''.join(output)}{process.stderr.read()}")


def registered_clients(instance: Path) -> list[tuple]:
    with sqlite3.connect(instance / "idp.sqlite3") as database:
        return database.execute(
            "SELECT client_id, secret_digest FROM oauth_clients ORDER BY id"
        ).fetchall()


def test_a_second_demo_while_one_runs_says_so_and_changes_nothing(tmp_path):
    first_ports = free_ports()
    first = demo_process(tmp_path, first_ports)
    try:
        wait_until_running(first)
        before = registered_clients(tmp_path)
        # Other ports, so that only the running demo, not a taken port, can stop it.
        second = demo_process(tmp_path, free_ports())
        started = any("The demo is running" in line for line in second.stdout)
        if started:
            second.kill()
        errors = second.communicate(timeout=30)[1]
        assert not started and second.returncode != 0, errors
        [line] = errors.strip().splitlines()
        assert "already running" in line and "nothing was changed" in line, line
        assert f"e:service at {first_ports.url('eservice')}/" in line
        assert registered_clients(tmp_path) == before
        # The running demo's portal still signs in with its client: the IdP sends to the login.
        start = requests.get(
            first_ports.url("eservice") + "/login", allow_redirects=False, timeout=10
        )
        authorize = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
        assert authorize.status_code == 302, authorize.text
        assert "/login" in authorize.headers["Location"]
    finally:
        first.terminate()
        first.communicate(timeout=30)


def test_a_taken_port_stops_the_demo_before_it_changes_anything(app, tmp_path):
    ports = free_ports()
    with socket.socket() as holder:
        holder.bind((HOST, ports.cloudphone))
        holder.listen()
        with pytest.raises(OSError, match="in use"):
            serve_demo(ports, demo_settings(app))
    with app.app_context():
        assert db.session.scalars(db.select(Client)).all() == []
        assert db.session.scalars(db.select(User)).all() == []
    # The ports it took before the taken one are free again.
    serve_demo_and_stop(ports, demo_settings(app))


def demo_settings(app) -> dict:
    return {key: app.config[key] for key in ("SQLALCHEMY_DATABASE_URI", "OUTBOX_DIR")}


def serve_demo_and_stop(ports: DemoPorts, settings: dict) -> NextStep:
    servers, next_step = serve_demo(ports, settings)
    for server in servers:
        server.stop()
    return next_step


def activate_demo_user(identity_provider, outbox) -> None:
    browser = identity_provider.test_client()
    link = path_of(outbox.last_link())
    form = {"password": PASSWORD, "password_confirm": PASSWORD}
    assert post_form(browser, link, form).status_code == 303
    assert post_form(browser, "/pin", {"pin": outbox.last_pin()}).status_code == 200


def test_a_restart_tells_how_to_go_on_from_where_the_journey_got(app, outbox):
    ports = free_ports()
    identity_provider, _, first = build_demo(ports, demo_settings(app))
    assert first == NextStep.ACTIVATE
    assert len(outbox.mails()) == 1
    # Restarted before the link was used: the same link still works, no second mail.
    assert build_demo(ports, demo_settings(app))[2] == NextStep.ACTIVATE
    assert len(outbox.mails()) == 1

    activate_demo_user(identity_provider, outbox)
    _, _, restarted = build_demo(ports, demo_settings(app))
    assert restarted == NextStep.SIGN_IN
    text = next_step_text(restarted)
    assert "activation link is used" in text and "sign in with username anna" in text
    assert "Open its link" not in text
    assert "./dev demo --reset" in text
    assert len(outbox.mails()) == 1


def test_reset_starts_over_with_a_new_activation_mail(tmp_path):
    settings = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    ports = free_ports()
    identity_provider, _, _ = build_demo(ports, settings)
    with identity_provider.app_context():
        db.engine.dispose()

    reset_demo_data(settings)
    assert not (tmp_path / "demo.sqlite3").exists()
    assert not (tmp_path / "outbox").exists()
    identity_provider, _, next_step = build_demo(ports, settings)
    with identity_provider.app_context():
        db.engine.dispose()
    assert next_step == NextStep.ACTIVATE
    assert len(list((tmp_path / "outbox").iterdir())) == 1


def test_reset_refuses_a_database_that_is_not_the_demo_file():
    with pytest.raises(click.ClickException, match="SQLite database only"):
        reset_demo_data({"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/idp"})


@pytest.fixture
def eservice():
    return create_relying_party(
        "eservice",
        issuer="http://127.0.0.1:9",
        base_url="http://127.0.0.1:9",
        client_id="demo",
        client_secret="demo",
    )


@pytest.mark.parametrize(
    ("accept_language", "lang", "texts"),
    [
        ("en-GB,en;q=0.9", "en", ["Welcome to e:service", "Sign in"]),
        ("de-DE,de;q=0.9,en;q=0.5", "de", ["Willkommen bei e:service", "Anmelden"]),
        (None, "de", ["Willkommen bei e:service", "Anmelden"]),
    ],
)
def test_the_portals_speak_the_browsers_language(eservice, accept_language, lang, texts):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    page = eservice.test_client().get("/", headers=headers).text
    assert f'<html lang="{lang}">' in page
    for text in texts:
        assert text in page


def test_the_signed_in_portal_speaks_english_and_escapes_the_booked_option(eservice):
    browser = eservice.test_client()
    with browser.session_transaction() as session:
        session["claims"] = {"sub": "s", "name": "Anna Admin", "entitlements": ["cloud.phone"]}
    page = browser.get("/?booked=<b>x</b>", headers={"Accept-Language": "en"}).text
    assert "Main menu" in page and "Sign out" in page and "Open cloud.phone" in page
    assert "Book an additional phone number" in page
    assert "The option “&lt;b&gt;x&lt;/b&gt;” has been booked." in page
    assert "Hauptmenü" not in page


# --- The journey through the demo's portals, over HTTP -----------------------------------------


@pytest.fixture
def demo(app, outbox):
    """The demo served on free ports, anna activated."""
    ports = free_ports()
    servers, _ = serve_demo(ports, demo_settings(app))
    activate_demo_user(servers[0].server.app, outbox)
    yield ports
    for server in servers:
        server.stop()


def hidden_next(page: requests.Response) -> dict:
    found = re.search(r'name="next" value="([^"]*)"', page.text)
    return {"next": html.unescape(found.group(1))} if found else {}


def sign_in(http: requests.Session, page: requests.Response, outbox) -> requests.Response:
    """On the identity provider's login page: password, then the PIN; the page it lands on."""
    assert urlsplit(page.url).path == "/login", page.url
    form = {"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD}
    pin_page = http.post(urljoin(page.url, "/login"), data=form | hidden_next(page))
    assert urlsplit(pin_page.url).path == "/pin", pin_page.text
    form = {"csrf_token": csrf_token(pin_page.text), "pin": outbox.last_pin()}
    return http.post(pin_page.url, data=form)


def signed_in_at_eservice(demo, outbox) -> tuple[requests.Session, requests.Response]:
    http = requests.Session()
    http.headers["Accept-Language"] = "de"
    menu = sign_in(http, http.get(demo.url("eservice") + "/login", timeout=10), outbox)
    assert "Hauptmenü" in menu.text and menu.url.startswith(demo.url("eservice"))
    return http, menu


def link_to(page: requests.Response, text: str) -> str:
    found = re.search(r'<a [^>]*href="([^"]+)"[^>]*>\s*' + re.escape(text) + r"\s*</a>", page.text)
    assert found, f"no link {text!r}"
    return html.unescape(found.group(1))


def test_open_cloudphone_signs_in_by_single_sign_on_without_a_page(demo, outbox):
    http, menu = signed_in_at_eservice(demo, outbox)
    sms_before = len(outbox.sms())
    cloudphone = http.get(link_to(menu, "cloud.phone öffnen"), timeout=10)
    assert cloudphone.url == demo.url("cloudphone") + "/"
    assert "cloud.phone – Telefonanlage" in cloudphone.text and "Anmelden" not in cloudphone.text
    assert len(outbox.sms()) == sms_before
    # And back: e:service's entry link leads to its main menu, still signed in.
    back = http.get(link_to(cloudphone, "e:service"), timeout=10)
    assert back.url == demo.url("eservice") + "/" and "Hauptmenü" in back.text


def test_signing_out_of_eservice_says_so(demo, outbox):
    http, _ = signed_in_at_eservice(demo, outbox)
    landed = http.post(demo.url("eservice") + "/logout", timeout=10)
    assert landed.url == demo.url("eservice") + "/signed-out"
    assert "Sie sind abgemeldet." in landed.text and "Anmelden" in landed.text
    assert "Hauptmenü" not in landed.text


def test_a_cancelled_booking_returns_to_the_menu_with_a_note(demo, outbox):
    http, menu = signed_in_at_eservice(demo, outbox)
    booking = http.get(demo.url("eservice") + link_to(menu, "Zusatzrufnummer buchen"))
    assert "Buchung bestätigen" in booking.text
    assert 'action="/authorize/cancel"' in booking.text, "no cancel on the booking page"
    back = http.post(
        urljoin(booking.url, "/authorize/cancel"),
        data={"csrf_token": csrf_token(booking.text), **hidden_next(booking)},
    )
    assert back.url == demo.url("eservice") + "/?cancelled=booking"
    assert "Die Buchung wurde abgebrochen." in back.text and "Hauptmenü" in back.text
    assert "wurde gebucht" not in back.text


def test_a_cancelled_sign_in_returns_to_the_start_page_with_a_note(demo, outbox):
    http = requests.Session()
    login_page = http.get(demo.url("eservice") + "/login", timeout=10)
    back = http.post(
        urljoin(login_page.url, "/authorize/cancel"),
        data={"csrf_token": csrf_token(login_page.text), **hidden_next(login_page)},
    )
    assert urlsplit(back.url).netloc == urlsplit(demo.url("eservice")).netloc
    assert "Die Anmeldung wurde abgebrochen." in back.text and "Anmelden" in back.text


def test_the_signed_out_portal_does_not_say_signed_in(eservice):
    browser = eservice.test_client()
    german = browser.get("/", headers={"Accept-Language": "de"}).text
    assert "Anmeldung über den Identity Provider" in german and "angemeldet" not in german
    english = browser.get("/", headers={"Accept-Language": "en"}).text
    assert "sign-in through the identity provider" in english and "signed in" not in english


def test_the_passkey_demo_is_at_localhost_and_says_how_to_add_one(tmp_path):
    """Browsers take WebAuthn only at a domain: `idp demo --passkeys` names its apps at
    http://localhost, its issuer is there, and it offers passkeys (the account's page)."""
    ports = free_ports()
    process = demo_process(tmp_path, ports, "--passkeys")
    try:
        output = wait_until_running(process)
        for line in process.stdout:  # the addresses and the steps, up to their last line
            output += line
            if "Ctrl-C stops all three" in line:
                break
        assert f"http://localhost:{ports.eservice}/" in output
        assert "127.0.0.1" not in output
        assert "Passkeys" in output and "no SMS is sent" in output
        issuer = f"http://localhost:{ports.idp}"
        discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        assert discovery.json()["issuer"] == issuer
        assert requests.get(f"{issuer}/login/passkey", timeout=10).status_code != 404
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_the_demo_says_plainly_what_to_try():
    text = next_step_text(NextStep.ACTIVATE)
    assert text.startswith("Try the journey:") and "leaflet" not in text
    assert "cloud.phone öffnen" in text


# --- ./dev's venv ------------------------------------------------------------------------------


def test_dev_demo_installs_only_when_what_the_install_reads_changed(tmp_path):
    """A second `./dev demo` (while one runs) must not spend its first 16 s on `pip install`:
    the venv is installed again only when pyproject, the build hook, a lock file or a catalog
    changed. A checkout of `dev` with a venv whose pip and idp only note that they ran."""
    shutil.copy(ROOT / "dev", tmp_path / "dev")
    for name in ("pyproject.toml", "hatch_build.py"):
        (tmp_path / name).write_text(f"# {name}\n")
    catalog = tmp_path / "idp" / "translations" / "de" / "LC_MESSAGES" / "messages.po"
    catalog.parent.mkdir(parents=True)
    catalog.write_text('msgid "Sign in"\nmsgstr "Anmelden"\n')
    calls = tmp_path / "calls"
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "pip", "idp"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        (bin_dir / tool).chmod(0o755)

    def installs_when_started() -> bool:
        calls.write_text("")
        subprocess.run([str(tmp_path / "dev"), "demo"], check=True, capture_output=True)
        ran = calls.read_text().splitlines()
        assert ran[-1] == "idp demo", ran
        return any("install" in line and "-e" in line for line in ran)

    assert installs_when_started()
    assert not installs_when_started()
    (tmp_path / "pyproject.toml").write_text("# a new dependency\n")
    assert installs_when_started()
    assert not installs_when_started()
    catalog.write_text('msgid "Sign in"\nmsgstr "Einloggen"\n')
    assert installs_when_started()
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "test.txt").write_text("# locked\n")
    assert installs_when_started()
