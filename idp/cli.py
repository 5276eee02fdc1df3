"""The operator's commands: `idp users ...`, `idp db upgrade` (Flask-Migrate), and more.

Bad input exits non-zero with one clear line on stderr and changes nothing."""

import copy
import getpass
import json
import os

import click
from flask import Flask
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

from idp import cli_errors, create_app
from idp.config import ConfigurationError
from idp.extensions import db
from idp.models import InvitationPurpose, User, UserState
from idp.senders import SendError
from idp.services import (
    account_limits,
    audit,
    clock,
    invitations,
    lockout,
    provisioning,
    tokens_logout,
    transactions,
    users,
)
from idp.services.users import UserError


def operator() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # containers may run with a uid that has no passwd entry
        name = f"uid{os.getuid()}"
    return f"cli:{name}"


def app_for_cli() -> Flask:
    try:
        return create_app()
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from None
    except (ValueError, TypeError) as error:
        raise cli_errors.setting_not_usable(error) from None
    except cli_errors.SURROUNDINGS_ERRORS as error:
        raise cli_errors.as_click_exception(error) from None


# Flask's and its extensions' commands for developers: they work, but an operator's help does
# not list them (`demo` is ours, and listed).
DEVELOPER_COMMANDS = ("run", "shell", "routes", "limiter")
# Flask's options of the group (-e/--env-file, -A/--app, --debug): for developers too.
DEVELOPER_OPTIONS = ("env_file", "app", "debug")
_CONFIGURATION_PROBLEM = "idp.configuration_problem"


class OperatorGroup(FlaskGroup):
    """Flask's command group for the operator: its help lists our commands, also where the
    configuration does not load (then with a note at its end, never an error line; Flask's own
    prints a traceback), and hides what is there for developers; its commands end with one
    line on stderr when the database or Redis fails them."""

    def __init__(self, **extra):
        super().__init__(**extra)
        # Copies: Flask's option objects are shared by every FlaskGroup of the process.
        self.params = [
            _hidden(param) if param.name in DEVELOPER_OPTIONS else param for param in self.params
        ]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Plain `idp` shows the help, on stdout and with success, as `idp --help` does.
        return super().parse_args(ctx, args or ["--help"])

    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            ctx.ensure_object(ScriptInfo).load_app()
        except click.ClickException as error:
            ctx.meta[_CONFIGURATION_PROBLEM] = error.format_message()
            names = sorted(self.commands)
        else:
            names = super().list_commands(ctx)
        return [name for name in names if name not in DEVELOPER_COMMANDS]

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        problem = ctx.meta.get(_CONFIGURATION_PROBLEM)
        if problem:
            formatter.write_paragraph()
            formatter.write_text(f"Configuration incomplete: {problem}")

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except cli_errors.SURROUNDINGS_ERRORS as error:
            raise cli_errors.as_click_exception(error) from None


def _hidden(param: click.Parameter) -> click.Parameter:
    hidden = copy.copy(param)
    hidden.hidden = True
    return hidden


def main() -> None:
    operator_group().main(prog_name="idp")


def operator_group() -> OperatorGroup:
    from flask_migrate.cli import db as db_group

    group = OperatorGroup(
        name="idp",
        create_app=app_for_cli,
        help="Operate the identity provider.",
        set_debug_flag=False,
        load_dotenv=False,
        add_version_option=False,
    )
    click.version_option(
        idp_version(), "--version", prog_name="idp", message="%(prog)s %(version)s"
    )(group)
    # On the group too, not only on the app: they are found, and their help shown, before
    # (and without) loading the configuration; running one loads it (with_appcontext).
    for command in (*operator_commands(), db_group):
        group.add_command(command)
    return group


def idp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("idp")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "unknown"


def operator_commands() -> list[click.Command]:
    from idp.cli_audit import audit_group
    from idp.cli_oidc import clients_group, keys_group
    from idp.demo import demo_command

    return [users_group, clients_group, keys_group, audit_group, demo_command]


def register_commands(app: Flask) -> None:
    for command in operator_commands():
        app.cli.add_command(command)


def fail_on_user_error(func):
    """UserError and SendError become one line on stderr, after a rollback."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as error:
            db.session.rollback()
            raise click.ClickException(str(error)) from None
        except SendError as error:
            db.session.rollback()
            raise click.ClickException(f"{error}; nothing was changed") from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


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
    if user.state == UserState.DISABLED:
        raise UserError(f"user {user.username!r} is disabled; enable it first")
    purpose = (
        InvitationPurpose.ACTIVATION if user.state == UserState.INVITED else InvitationPurpose.RESET
    )
    invitations.issue_and_send(
        user, purpose, moment, actor=operator(), event="password.reset_requested"
    )
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
    until when)."""
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
    deliveries = users.disable(user, moment, actor=actor, reason=reason)
    audit.record("user.disabled", now=moment, actor=actor, user=user, reason=user.disabled_reason)
    db.session.commit()
    tokens_logout.send(deliveries)
    click.echo(f"disabled {user.username}")


@users_group.command("enable")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def enable(username):
    """Enable a disabled account again, whoever disabled it."""
    moment = clock.now()
    user = users.get_changeable(username)
    if user.state != UserState.DISABLED:
        raise UserError(f"user {user.username!r} is not disabled")
    users.enable(user)
    audit.record("user.enabled", now=moment, actor=operator(), user=user)
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
    old = user.phone
    user.phone = users.check_phone(phone)
    # PINs already sent went to the old number, which may be the reason for the change.
    transactions.end_pending(user, moment)
    audit.record(
        "user.phone_changed",
        now=moment,
        actor=operator(),
        user=user,
        old=users.masked_phone(old),
        new=users.masked_phone(user.phone),
    )
    db.session.commit()
    click.echo(f"phone of {user.username} is now {user.phone}")


@users_group.command("unlock")
@click.argument("username")
@with_appcontext
@fail_on_user_error
def unlock(username):
    """Lift every lock of the account: after wrong passwords, the password attempts blocked per
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
