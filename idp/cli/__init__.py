"""The operator's command line: `idp users ...`, `idp clients ...`, `idp keys ...`, `idp audit
...`, `idp logout deliver`, `idp db upgrade` (Flask-Migrate) and `idp demo`; a module per
command group.

Bad input exits non-zero with one clear line on stderr and changes nothing."""

import copy

import click
from flask import Flask
from flask.cli import FlaskGroup, ScriptInfo

from idp import create_app
from idp.cli import errors as cli_errors
from idp.errors import ConfigurationError


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
    from idp.cli.audit import audit_group
    from idp.cli.logout import logout_group
    from idp.cli.oidc import clients_group, keys_group
    from idp.cli.users import users_group
    from idp.demo import demo_command

    return [users_group, clients_group, keys_group, audit_group, logout_group, demo_command]


def register_commands(app: Flask) -> None:
    for command in operator_commands():
        app.cli.add_command(command)
