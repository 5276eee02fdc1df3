"""`idp users ...`: the accounts of portal administrators."""

import json

import click
from flask.cli import with_appcontext

from idp import audit
from idp.accounts import invitations, lifecycle, provisioning, users
from idp.accounts.models import InvitationPurpose, User, UserState
from idp.authn import account_limits, lockout
from idp.cli import errors as cli_errors
from idp.cli.common import fail_on_user_error, operator
from idp.cli.passkeys import passkeys_group, passkeys_summary
from idp.errors import UserError
from idp.platform import clock
from idp.platform.extensions import db


def user_summary(user: User) -> dict:
    return {
        "username": user.username,
        "sub": user.subject,
        "name": user.name,
        "email": user.email,
        "phone": user.phone,
        "state": user.state,
        "locked": lockout.is_locked(user, clock.now()),
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


@click.group("users", help="Accounts of portal administrators.")
def users_group():
    pass


users_group.add_command(passkeys_group)


@users_group.command("invite")
@click.argument("username")
@click.option("--email", required=True, help="Where the activation mail goes.")
@click.option("--phone", required=True, help="Mobile number for the SMS PIN, as +49...")
@click.option("--name", default=None, help="Full name (one line): the mail greets by it.")
@click.option(
    "--locale",
    type=click.Choice(["de", "en"]),
    default="de",
    show_default=True,
    help="Language of mails and SMS.",
)
@with_appcontext
@fail_on_user_error
def invite(username, email, phone, name, locale):
    """Create an invited account and send the activation mail (the link is never printed)."""
    moment = clock.now()
    user = users.create_user(username, email=email, phone=phone, name=name, now=moment)
    user.locale = locale
    invitations.issue_and_send(
        user, InvitationPurpose.ACTIVATION, moment, actor=operator(), event="user.invited"
    )
    db.session.commit()
    click.echo(f"invited {user.username}: activation mail sent to {user.email}")


@users_group.command("resend-invite")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def resend_invite(username):
    """Send a new activation mail; the previous link stops working."""
    moment = clock.now()
    user = users.get_changeable(username)
    if user.state != UserState.INVITED:
        raise UserError(f"user {user.username!r} is {user.state}, not invited")
    invitations.issue_and_send(
        user, InvitationPurpose.ACTIVATION, moment, actor=operator(), event="user.invite_resent"
    )
    db.session.commit()
    click.echo(f"activation mail sent again to {user.email}; the previous link is dead")


@users_group.command("reset-password")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def reset_password(username):
    """Send a set-password link (confirmed by SMS PIN, like the activation)."""
    moment = clock.now()
    user = users.get_changeable(username)
    lifecycle.send_password_link(user, moment, actor=operator())
    db.session.commit()
    click.echo(f"set-password mail sent to {user.email}")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.option("--state", type=click.Choice([s.value for s in UserState]), default=None)
@with_appcontext
def list_users(as_json, state):
    """List accounts."""
    query = db.select(User).order_by(User.username_key)
    if state:
        query = query.where(User.state == state)
    found = [user_summary(user) for user in db.session.scalars(query)]
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for entry in found:
        click.echo(
            f"{entry['username']:<24} {entry['state']:<9} {entry['email']:<32} {entry['phone']}"
        )


@users_group.command("show")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def show(username):
    """Show one account as JSON, with its locks and SMS caps ("limits": which are active and
    until when; "hard": true for a lock after LOCKOUT_HARD_LIMIT failures, which lasts until
    `idp users unlock`)."""
    user = users.get_by_username(username)
    summary = user_summary(user)
    limits = account_limits.of(user, clock.now())
    summary["limits"] = {limit.name: limit_json(limit) for limit in limits}
    unreadable = next((limit.unreadable for limit in limits if limit.unreadable), None)
    if unreadable:
        # The account is what support needs now; the limits the counters hold can wait.
        click.echo(
            f"Warning: the limits held in Redis ({', '.join(account_limits.SHARED_LIMITS)}) "
            f"could not be read: {cli_errors.describe(unreadable)}",
            err=True,
        )
    invitation = invitations.latest_for(user)
    summary["invitation"] = (
        {
            "purpose": invitation.purpose,
            "state": invitation.state,
            "expires_at": invitation.expires_at.isoformat(),
        }
        if invitation
        else None
    )
    summary["passkeys"] = passkeys_summary(user)
    summary["disabled"] = (
        {
            "at": user.disabled_at.isoformat() if user.disabled_at else None,
            "by": user.disabled_by,
            "reason": user.disabled_reason,
        }
        if user.state == UserState.DISABLED
        else None
    )
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False))


def limit_json(limit: account_limits.Limit) -> dict:
    if limit.unreadable:
        return {"active": None, "until": None, "unknown": cli_errors.describe(limit.unreadable)}
    return limit.as_json()


@users_group.command("disable")
@click.argument("username")
@click.option("--reason", default=None, help="Why (one line): shown by `idp users show`.")
@with_appcontext
@fail_on_user_error
def disable(username, reason):
    """Disable an account: its sessions, tokens and links die; relying parties are told.
    Provisioning (SCIM) cannot enable it again; `enable` does."""
    moment = clock.now()
    user = users.get_by_username(username)
    actor = operator()
    after_commit = lifecycle.disable(user, moment, actor=actor, reason=reason)
    db.session.commit()
    after_commit.run()
    click.echo(f"disabled {user.username}")


@users_group.command("enable")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def enable(username):
    """Enable a disabled account again, whoever disabled it."""
    moment = clock.now()
    user = users.get_changeable(username)
    lifecycle.enable(user, moment, actor=operator())
    db.session.commit()
    click.echo(f"enabled {user.username} ({user.state})")


@users_group.command("set-phone")
@click.argument("username")
@click.argument("phone")
@with_appcontext
@fail_on_user_error
def set_phone(username, phone):
    """Change the mobile number that receives the PINs."""
    moment = clock.now()
    user = users.get_changeable(username)
    after_commit = lifecycle.change_phone(user, phone, moment, actor=operator())
    db.session.commit()
    after_commit.run()
    click.echo(f"phone of {user.username} is now {user.phone}")


@users_group.command("unlock")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def unlock(username):
    """Lift every lock of the account: after wrong passwords (the hard one after
    LOCKOUT_HARD_LIMIT of them too), the password attempts blocked per
    network, after wrong PINs, the wait for the next PIN, and the day's SMS caps of the account
    and of its number. When Redis cannot be reached, lifts those in the database, says which
    it could not lift, and exits 1."""
    moment = clock.now()
    user = users.get_changeable(username)
    lifted = account_limits.lift(user, moment)
    not_lifted = list(account_limits.SHARED_LIMITS) if lifted.shared_not_lifted else []
    audit.record(
        "user.unlocked",
        now=moment,
        actor=operator(),
        user=user,
        lifted=[limit.name for limit in lifted.limits],
        not_lifted=not_lifted,
    )
    db.session.commit()
    if lifted.limits:
        said = ", the ".join(map(describe, lifted.limits))
        click.echo(f"unlocked {user.username}: lifted the {said}")
    elif not not_lifted:
        click.echo(f"nothing to lift for {user.username}: no lock or cap was active")
    if not_lifted:
        labels = ", the ".join(LIMIT_LABELS[name] for name in not_lifted)
        raise click.ClickException(
            f"could not lift the {labels} of {user.username} (held in Redis): "
            f"{cli_errors.describe(lifted.shared_not_lifted)}; "
            "run `idp users unlock` again when Redis answers"
        )


LIMIT_LABELS = {
    "password_lock": "password lock",
    "login_attempts": "block of password attempts from a network",
    "pin_lock": "PIN lock",
    "pin_wait": "wait for the next PIN",
    "sms_per_account": "SMS cap of the account",
    "sms_per_number": "SMS cap of the number",
}


def describe(limit: account_limits.Limit) -> str:
    """'PIN lock until 2026-12-01T09:30:00+00:00 (6 failures)', for the operator."""
    counts = limit.counts
    if "failures" in counts:
        detail = f" ({counts['failures']} failures)"
    elif "refused" in counts:
        detail = f" ({counts['refused']} attempts refused)"
    elif "sent" in counts:
        detail = f" ({counts['sent']} sent, cap {counts['cap']})"
    else:
        detail = ""
    if limit.hard:
        return f"hard {LIMIT_LABELS[limit.name]}{detail}"
    return f"{LIMIT_LABELS[limit.name]} until {limit.until.isoformat(timespec='seconds')}{detail}"


@users_group.command("purge")
@with_appcontext
@fail_on_user_error
def purge():
    """Erase the personal data of accounts deprovisioned longer ago than the retention period
    (DEPROVISIONED_RETENTION_DAYS). Safe to run on a schedule (a CronJob): each batch commits
    on its own, and a second run finds nothing left to do."""
    moment = clock.now()
    erased = 0
    while done := provisioning.erase_expired(moment, actor=operator()):
        db.session.commit()
        erased += done
    click.echo(f"erased {erased} deprovisioned account(s)")
