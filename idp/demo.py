"""`idp demo`: the identity provider and its two relying parties, e:service and cloud.phone, in
one process on 127.0.0.1, with development senders, an outbox page and an invited demo
administrator, so that a newcomer walks the whole journey in a browser."""

import signal
import threading
from dataclasses import dataclass

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select

from idp import create_app
from idp.demo_apps.relying_party import create_relying_party
from idp.demo_apps.servers import BackgroundServer
from idp.extensions import db
from idp.models import Client, InvitationPurpose
from idp.services import audit, clients, clock, invitations, users

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


@dataclass(frozen=True)
class DemoPorts:
    idp: int = 5000
    eservice: int = 5001
    cloudphone: int = 5002

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self, name)}"


def invite_demo_user() -> bool:
    """Invites the demo administrator unless she exists; True when a mail went out."""
    if users.find_by_username(DEMO_USER["username"]) is not None:
        return False
    moment = clock.now()
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
    return True


def register_relying_party(kind: str, base_url: str) -> tuple[str, str]:
    """A fresh client for a demo relying party (its secret is shown only once, so the one of
    an earlier run cannot be reused); returns client_id and secret."""
    name = RELYING_PARTIES[kind]
    for old in db.session.scalars(select(Client).where(Client.name == name)):
        clients.delete(old)
    client, secret = clients.create(
        name,
        redirect_uris=[f"{base_url}/callback"],
        post_logout_redirect_uris=[f"{base_url}/"],
        backchannel_logout_uri=f"{base_url}/backchannel-logout",
        public=False,
        alg="ES256",
        now=clock.now(),
        required_entitlement=REQUIRED_ENTITLEMENT.get(kind),
    )
    audit.record("client.created", now=clock.now(), actor="demo", client_id=client.client_id)
    db.session.commit()
    return client.client_id, secret


def build_demo(ports: DemoPorts, overrides: dict | None = None) -> tuple[Flask, dict[str, Flask]]:
    """The identity provider (migrated, demo user invited, clients registered) and the two
    relying parties, not yet serving."""
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
        invite_demo_user()
        for kind in RELYING_PARTIES:
            client_id, secret = register_relying_party(kind, ports.url(kind))
            relying_parties[kind] = create_relying_party(
                kind,
                issuer=ports.url("idp"),
                base_url=ports.url(kind),
                client_id=client_id,
                client_secret=secret,
                links={name: ports.url(name) + "/" for name in RELYING_PARTIES},
            )
    return identity_provider, relying_parties


def serve_demo(ports: DemoPorts, overrides: dict | None = None) -> list[BackgroundServer]:
    identity_provider, relying_parties = build_demo(ports, overrides)
    servers = [BackgroundServer(identity_provider, ports.idp).start()]
    servers += [
        BackgroundServer(app, getattr(ports, kind)).start() for kind, app in relying_parties.items()
    ]
    return servers


@click.command("demo")
@click.option("--port", default=5000, show_default=True, help="The identity provider's port.")
@click.option("--eservice-port", default=5001, show_default=True)
@click.option("--cloudphone-port", default=5002, show_default=True)
@with_appcontext
def demo_command(port: int, eservice_port: int, cloudphone_port: int) -> None:
    """Run the identity provider with the e:service and cloud.phone demo portals."""
    if current_app.config["ENVIRONMENT"] == "production":
        raise click.ClickException("idp demo runs only with IDP_CONFIG=development")
    ports = DemoPorts(port, eservice_port, cloudphone_port)
    try:
        servers = serve_demo(ports)
    except OSError as error:
        raise click.ClickException(f"cannot start the demo: {error}") from None
    click.echo(
        f"""
The demo is running:
  e:service (portal)      {ports.url("eservice")}/
  cloud.phone             {ports.url("cloudphone")}/
  identity provider       {ports.url("idp")}/
  outbox (mails and SMS)  {ports.url("idp")}/_dev/outbox

Walk the journey of the leaflet:
  1. Open the outbox: the activation mail for {DEMO_USER["username"]} is there. Open its link.
  2. Set a password (12 characters or more) and press "Speichern".
  3. Enter the PIN from the SMS in the outbox.
  4. Open e:service, sign in with username, password and a new PIN: the main menu appears.
  5. Open cloud.phone: single sign-on, no new login. Book an option in e:service: it asks
     for password and PIN again. Sign out in e:service: cloud.phone is signed out too.
Ctrl-C stops all three.
"""
    )
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
