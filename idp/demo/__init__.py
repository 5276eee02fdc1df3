"""`idp demo`: the identity provider and its two relying parties, e:service and cloud.phone, in
one process on 127.0.0.1, with development senders, an outbox page and an invited demo
administrator, so that a newcomer walks the whole journey in a browser."""

import enum
import fcntl
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import make_url, select

from idp import audit, create_app
from idp.accounts import invitations, users
from idp.accounts.models import InvitationPurpose, UserState
from idp.demo.relying_party import create_relying_party
from idp.demo.servers import BackgroundServer
from idp.oidc import clients
from idp.oidc.models import Client
from idp.platform import clock
from idp.platform.extensions import db

DEMO_USER = {
    "username": "anna",
    "email": "anna@example.com",
    "phone": "+4915112345678",
    "name": "Anna Admin",
}
# The demo customer has a cloud.phone contract; the cloud.phone portal admits only such
# customers (as the ordering system sets up through SCIM in production).
DEMO_ENTITLEMENTS = ["cloud.phone"]
REQUIRED_ENTITLEMENT = {"cloudphone": "cloud.phone"}
RELYING_PARTIES = {"eservice": "e:service (demo)", "cloudphone": "cloud.phone (demo)"}
# In the instance folder, next to the demo's database and outbox: locked while a demo runs.
LOCK_FILE = "demo.lock"
START_OVER = "To start over with a new activation mail: stop the demo and run ./dev demo --reset"


class NextStep(enum.StrEnum):
    """What the demo administrator does next, by how far an earlier run of the demo got."""

    ACTIVATE = "activate"  # her activation mail is in the outbox, its link unused
    SIGN_IN = "sign in"  # she is activated: the link is used, her password works
    START_OVER = "start over"  # disabled (by an operator command): only a reset helps


@dataclass(frozen=True)
class DemoPorts:
    idp: int = 5000
    eservice: int = 5001
    cloudphone: int = 5002
    # The name in the addresses (every server listens on 127.0.0.1). With passkeys it is
    # "localhost": browsers take WebAuthn only at a domain, and http://localhost is a secure
    # context.
    host: str = "127.0.0.1"

    def url(self, name: str) -> str:
        return f"http://{self.host}:{getattr(self, name)}"


# What `idp demo --passkeys` changes: passkeys offered beside the SMS PIN, which stays the
# default for an account without one.
PASSKEY_SETTINGS = {"SECOND_FACTORS": ["sms", "passkey"]}


def invite_demo_user() -> NextStep:
    """Invites the demo administrator unless she exists, or again when her earlier link has
    expired unused; returns what she does next."""
    user = users.find_by_username(DEMO_USER["username"])
    if user is not None and user.state == UserState.ACTIVE:
        return NextStep.SIGN_IN
    if user is not None and user.state != UserState.INVITED:
        return NextStep.START_OVER
    moment = clock.now()
    if user is not None and _link_still_works(user, moment):
        return NextStep.ACTIVATE
    if user is None:
        user = users.create_user(
            DEMO_USER["username"],
            email=DEMO_USER["email"],
            phone=DEMO_USER["phone"],
            name=DEMO_USER["name"],
            now=moment,
        )
        user.entitlements = DEMO_ENTITLEMENTS
    invitations.issue_and_send(
        user, InvitationPurpose.ACTIVATION, moment, actor="demo", event="user.invited"
    )
    db.session.commit()
    return NextStep.ACTIVATE


def _link_still_works(user, now) -> bool:
    latest = invitations.latest_for(user)
    return (
        latest is not None and latest.state in invitations.OPEN_STATES and latest.expires_at > now
    )


def register_relying_party(kind: str, base_url: str) -> tuple[str, str]:
    """A fresh client for a demo relying party (its secret is shown only once, so the one of
    an earlier run cannot be reused); returns client_id and secret."""
    name = RELYING_PARTIES[kind]
    for old in db.session.scalars(select(Client).where(Client.name == name)):
        clients.delete(old)
    spec = clients.ClientSpec(
        name,
        redirect_uris=[f"{base_url}/callback"],
        # The first is where the back button after a login lands; the second says "signed out".
        post_logout_redirect_uris=[f"{base_url}/", f"{base_url}/signed-out"],
        backchannel_logout_uri=f"{base_url}/backchannel-logout",
        alg="ES256",
        required_entitlement=REQUIRED_ENTITLEMENT.get(kind),
    )
    client, secret = clients.create(spec, clock.now())
    audit.record("client.created", now=clock.now(), actor="demo", client_id=client.client_id)
    db.session.commit()
    return client.client_id, secret


def build_demo(
    ports: DemoPorts, overrides: dict | None = None
) -> tuple[Flask, dict[str, Flask], NextStep]:
    """The identity provider (migrated, demo user invited, clients registered), the two
    relying parties, not yet serving, and what the demo administrator does next."""
    identity_provider = create_app(
        "development",
        {
            "ISSUER": ports.url("idp"),
            "PORTAL_URL": ports.url("eservice") + "/",
            "DEV_PAGES": True,
            **(overrides or {}),
        },
    )
    relying_parties = {}
    with identity_provider.app_context():
        upgrade()
        next_step = invite_demo_user()
        for kind in RELYING_PARTIES:
            client_id, secret = register_relying_party(kind, ports.url(kind))
            relying_parties[kind] = create_relying_party(
                kind,
                issuer=ports.url("idp"),
                base_url=ports.url(kind),
                client_id=client_id,
                client_secret=secret,
                # Each portal's entry link signs in by itself (single sign-on); "My access"
                # is the identity provider's account page.
                links={
                    **{name: ports.url(name) + "/login" for name in RELYING_PARTIES},
                    "account": ports.url("idp") + "/account",
                },
            )
    return identity_provider, relying_parties, next_step


def serve_demo(
    ports: DemoPorts, overrides: dict | None = None
) -> tuple[list[BackgroundServer], NextStep]:
    """Serves the demo; OSError, with nothing changed, when one of its ports is taken."""
    servers = _take_ports(ports)
    try:
        identity_provider, relying_parties, next_step = build_demo(ports, overrides)
    except BaseException:
        for server in servers.values():
            server.close()
        raise
    servers["idp"].start(identity_provider)
    for kind, app in relying_parties.items():
        servers[kind].start(app)
    return list(servers.values()), next_step


def _take_ports(ports: DemoPorts) -> dict[str, BackgroundServer]:
    """The demo's three servers, listening but not serving yet: bound before the database is
    touched, so that a taken port leaves the clients of whoever holds it alone."""
    taken: dict[str, BackgroundServer] = {}
    try:
        for name in ("idp", *RELYING_PARTIES):
            taken[name] = BackgroundServer(None, getattr(ports, name))
    except OSError:
        for server in taken.values():
            server.close()
        raise
    return taken


@contextmanager
def running_alone(instance_path: str, ports: DemoPorts) -> Iterator[None]:
    """Held while the demo runs: a second demo of this instance folder (its database and
    outbox), on any ports, stops with a ClickException before it changes anything. The lock
    dies with the process, however that ends."""
    path = Path(instance_path) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            where = lock.read().strip() or "on this machine"
            raise click.ClickException(
                f"the demo is already running ({where}); nothing was changed. Use that one, or "
                "stop it (Ctrl-C in its terminal) before starting it again."
            ) from None
        lock.truncate(0)
        lock.write(f"e:service at {ports.url('eservice')}/")
        lock.flush()
        yield


def reset_demo_data(config) -> None:
    """Removes the demo's SQLite database and outbox: the next start invites anew."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise click.ClickException(
            "--reset removes the demo's own SQLite database only; this one is configured "
            "elsewhere: empty it yourself"
        )
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(url.database + suffix).unlink(missing_ok=True)
    shutil.rmtree(config["OUTBOX_DIR"], ignore_errors=True)


def next_step_text(next_step: NextStep, *, passkeys: bool = False) -> str:
    """What to do now, after the addresses: the leaflet's journey from where the demo is."""
    username = DEMO_USER["username"]
    sign_in = [
        f'Open e:service, press "Anmelden" ("Sign in") and sign in with username {username},',
        "your password and a new PIN from the outbox: the main menu appears.",
    ]
    single_sign_on = [
        'Press "cloud.phone öffnen" ("Open cloud.phone") in e:service: cloud.phone opens signed',
        "in (single sign-on, no new login). Book an option in e:service: it asks for password",
        "and PIN again. Sign out in e:service: cloud.phone is signed out too.",
    ]
    passkey = [
        'Passkeys: in e:service press "Mein Zugang" ("My access"), then "Passkeys", and add one',
        "(the browser asks for your fingerprint, face or screen lock). Sign out and sign in",
        "again: after the password the passkey confirms the login, and no SMS is sent.",
    ]
    if next_step == NextStep.START_OVER:
        return f"{username} was disabled in an earlier run.\n{START_OVER}\nCtrl-C stops all three."
    if next_step == NextStep.SIGN_IN:
        intro = f"{username} was activated in an earlier run (her activation link is used):"
        steps = [sign_in, single_sign_on]
    else:
        intro = "Try the journey:"
        steps = [
            [f"Open the outbox: the activation mail for {username} is there. Open its link."],
            ['Set a password (12 characters or more) and press "Speichern" ("Save").'],
            ["Enter the PIN from the SMS in the outbox."],
            sign_in,
            single_sign_on,
        ]
    if passkeys:
        steps.append(passkey)
    lines = [intro]
    for number, step in enumerate(steps, start=1):
        lines.append(f"  {number}. {step[0]}")
        lines += [f"     {line}" for line in step[1:]]
    return "\n".join([*lines, START_OVER, "Ctrl-C stops all three."])


@click.command("demo")
@click.option("--port", default=5000, show_default=True, help="The identity provider's port.")
@click.option("--eservice-port", default=5001, show_default=True)
@click.option("--cloudphone-port", default=5002, show_default=True)
@click.option(
    "--reset", is_flag=True, help="Start over: remove the demo's database and outbox first."
)
@click.option(
    "--passkeys",
    is_flag=True,
    help="Offer passkeys beside the SMS PIN; the demo is then at http://localhost.",
)
@with_appcontext
def demo_command(
    port: int, eservice_port: int, cloudphone_port: int, reset: bool, passkeys: bool
) -> None:
    """Run the identity provider with the e:service and cloud.phone demo portals."""
    if current_app.config["ENVIRONMENT"] == "production":
        raise click.ClickException("idp demo runs only with IDP_CONFIG=development")
    ports = DemoPorts(
        port, eservice_port, cloudphone_port, host="localhost" if passkeys else "127.0.0.1"
    )
    with running_alone(current_app.instance_path, ports):
        if reset:
            reset_demo_data(current_app.config)
        try:
            servers, next_step = serve_demo(ports, PASSKEY_SETTINGS if passkeys else None)
        except OSError as error:
            raise click.ClickException(
                f"cannot start the demo: {error}; nothing was changed"
            ) from None
        click.echo(
            f"""
The demo is running:
  e:service (portal)      {ports.url("eservice")}/
  cloud.phone             {ports.url("cloudphone")}/
  identity provider       {ports.url("idp")}/
  outbox (mails and SMS)  {ports.url("idp")}/_dev/outbox

{next_step_text(next_step, passkeys=passkeys)}
"""
        )
        _serve_until_stopped(servers)


def _serve_until_stopped(servers: list[BackgroundServer]) -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()
        click.echo("demo stopped")
