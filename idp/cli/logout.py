"""`idp logout deliver`: the back-channel logouts that are due, tried once now (from cron, or
where no gunicorn worker polls: LOGOUT_POLL_INTERVAL=0)."""

import click
from flask.cli import with_appcontext

from idp.oidc import logout_outbox
from idp.platform import clock


@click.group("logout", help="Back-channel logouts owed to relying parties.")
def logout_group():
    pass


@logout_group.command("deliver")
@with_appcontext
def deliver():
    """Try every back-channel logout that is due, once; what fails is tried again later."""
    tried = delivered = 0
    while True:
        batch, taken = logout_outbox.deliver_due(clock.now())
        tried, delivered = tried + batch, delivered + taken
        if batch < logout_outbox.CLAIM_BATCH:
            break
    logout_outbox.forget_finished(clock.now())
    click.echo(f"{tried} tried, {delivered} delivered, {logout_outbox.pending_count()} owed")
