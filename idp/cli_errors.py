"""What an operator's command says when the world around it fails: the database unreachable or
refusing, Redis down, a setting the app cannot use. One line on stderr naming the cause, never
a traceback. The lines never repeat a URL from the configuration: those carry passwords."""

import click
from alembic.util.exc import CommandError as MigrationError
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

# Raised inside a command by the services it uses (not by the command's own checks).
SURROUNDINGS_ERRORS = (DBAPIError, RedisError, StorageError, MigrationError)

# What the drivers say when a table is missing: the schema was never created or is old.
NO_SCHEMA = ("UndefinedTable", "no such table")


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def describe(error: Exception) -> str:
    if isinstance(error, DBAPIError):
        cause = error.orig or error
        if any(sign in f"{type(cause).__name__} {cause}" for sign in NO_SCHEMA):
            return "the database has no schema or an old one: run `idp db upgrade` first"
        return f"database (IDP_SQLALCHEMY_DATABASE_URI): {first_line(cause)}"
    if isinstance(error, RedisError | StorageError):
        return f"Redis (IDP_REDIS_URL) is not usable: {first_line(error)}"
    return f"database migration: {first_line(error)}"


def as_click_exception(error: Exception) -> click.ClickException:
    return click.ClickException(describe(error))


def setting_not_usable(error: Exception) -> click.ClickException:
    """A value the app could not use while it was built (a number that is no number, an
    unknown log level): the configuration, not the code, is what to fix."""
    return click.ClickException(f"a setting is not valid: {first_line(error)}")
