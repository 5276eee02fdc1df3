"""What every command group shares: who the operator is, and one line on stderr for the
errors a command expects."""

import getpass
import os

import click

from idp.errors import SendError, UserError
from idp.platform.extensions import db


def operator() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # containers may run with a uid that has no passwd entry
        name = f"uid{os.getuid()}"
    return f"cli:{name}"


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
