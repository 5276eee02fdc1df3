"""`idp demo`: the identity provider on 127.0.0.1:5000 with development senders and an invited
demo administrator, so that a newcomer can walk the whole journey in a browser."""

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from idp.extensions import db
from idp.models import InvitationPurpose
from idp.services import audit, clock, invitations, users

DEMO_USER = {
    "username": "anna",
    "email": "anna@example.com",
    "phone": "+4915112345678",
    "name": "Anna Admin",
}


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
    invitation, url = invitations.issue(user, InvitationPurpose.ACTIVATION, moment)
    audit.record("user.invited", now=moment, actor="demo", user=user)
    invitations.send(invitation, url, moment)
    db.session.commit()
    return True


@click.command("demo")
@click.option("--port", default=5000, show_default=True)
@with_appcontext
def demo_command(port: int) -> None:
    """Run the demo (development only)."""
    app = current_app._get_current_object()
    if app.config["ENVIRONMENT"] == "production":
        raise click.ClickException("idp demo runs only with IDP_CONFIG=development")
    upgrade()
    invited = invite_demo_user()
    outbox = app.config["OUTBOX_DIR"]
    click.echo(
        f"""
Identity provider (development): {app.config["ISSUER"]}
Demo administrator: {DEMO_USER["username"]} ({"invited just now" if invited else "exists"})

Next steps:
  1. Open the activation mail: the newest *-mail-*.json in {outbox}
  2. Open its link, set a password (12+ characters) and press "Speichern".
  3. Enter the PIN from the newest *-sms-*.json in the same folder.
  4. Sign in at {app.config["ISSUER"]}/login with password and a new PIN.
Ctrl-C stops the demo.
"""
    )
    app.run(host="127.0.0.1", port=port, use_reloader=False, debug=False)
