"""`idp users passkeys ...`: an account's passkeys for support (a lost device)."""

import click
from flask.cli import with_appcontext

from idp.accounts import users
from idp.accounts.models import User
from idp.authn.factors.passkey import ceremonies, manage
from idp.cli.common import fail_on_user_error, operator
from idp.errors import UserError
from idp.platform import clock
from idp.platform.extensions import db


def passkeys_summary(user: User) -> list[dict]:
    """What `idp users show` says of the account's passkeys."""
    return [
        {
            "id": passkey.id,
            "name": passkey.name,
            "credential": ceremonies.credential_label(passkey),
            "synced": passkey.synced,
            "created_at": passkey.created_at.isoformat(),
            "last_used_at": passkey.last_used_at.isoformat() if passkey.last_used_at else None,
        }
        for passkey in ceremonies.passkeys_of(user)
    ]


@click.group("passkeys", help="Passkeys of an account.")
def passkeys_group():
    pass


@passkeys_group.command("remove")
@click.argument("username")
@click.argument("passkey_id", required=False, type=int)
@with_appcontext
@fail_on_user_error
def remove(username, passkey_id):
    """Remove one passkey (its id from `idp users show`) or, without an id, all of them. On the
    audit trail; she is told by mail."""
    user = users.get_by_username(username)
    if passkey_id is None:
        chosen = ceremonies.passkeys_of(user)
    else:
        found = manage.find(user, passkey_id)
        if found is None:
            raise UserError(f"user {username!r} has no passkey {passkey_id}")
        chosen = [found]
    after_commit = manage.remove(user, chosen, clock.now(), actor=operator(), ip=None)
    db.session.commit()
    after_commit.run()
    click.echo(f"Removed {len(chosen)} passkey(s) of {username}.")
