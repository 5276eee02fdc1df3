"""What an operator's command says when the world around it fails: the database unreachable or
refusing, Redis down, a setting the app cannot use. One line on stderr naming the cause, never
a traceback. The lines never repeat a URL from the configuration, nor any piece of a URL's
user info that a driver echoes (a password with an unescaped @ becomes part of the "host" in
"failed to resolve host ..."): those carry passwords."""

import os
import re
from urllib.parse import unquote

import click
from alembic.util.exc import CommandError as MigrationError
from sqlalchemy.exc import DBAPIError

from idp.platform.ratelimit import STORAGE_ERRORS

# Raised inside a command by the services it uses (not by the command's own checks).
SURROUNDINGS_ERRORS = (DBAPIError, *STORAGE_ERRORS, MigrationError)

# What the drivers say when a table is missing: the schema was never created or is old.
NO_SCHEMA = ("UndefinedTable", "no such table")


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


# The settings whose URLs carry credentials. The command line takes them from the environment
# (the configuration files in the package set none).
CREDENTIAL_URL_SETTINGS = (
    "IDP_SQLALCHEMY_DATABASE_URI",
    "IDP_MIGRATION_DATABASE_URI",
    "IDP_REDIS_URL",
    "IDP_RATELIMIT_STORAGE_URI",
)
# Shorter pieces give little away, and masking them would mask letters of every other word.
SHORTEST_MASKED_PIECE = 4


def credential_pieces(url: str) -> set[str]:
    """What of a URL's user info a line must not show, however a parser split it: all of it
    (up to the last @, as an unescaped @, / or ? in a password ends it early for parsers),
    the password, and every fragment between those characters; as written and decoded."""
    _, scheme, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if not scheme or not at:
        return set()
    pieces = {userinfo, userinfo.partition(":")[2], *re.split(r"[@:/?#]", userinfo)}
    pieces |= {unquote(piece) for piece in pieces}
    return {piece for piece in pieces if len(piece) >= SHORTEST_MASKED_PIECE}


def without_credentials(line: str) -> str:
    pieces = set().union(
        *(credential_pieces(os.environ.get(name, "")) for name in CREDENTIAL_URL_SETTINGS)
    )
    for piece in sorted(pieces, key=len, reverse=True):
        line = line.replace(piece, "***")
    return line


def describe(error: Exception) -> str:
    return without_credentials(_cause(error))


def _cause(error: Exception) -> str:
    if isinstance(error, DBAPIError):
        cause = error.orig or error
        if any(sign in f"{type(cause).__name__} {cause}" for sign in NO_SCHEMA):
            return "the database has no schema or an old one: run `idp db upgrade` first"
        return f"database (IDP_SQLALCHEMY_DATABASE_URI): {first_line(cause)}"
    if isinstance(error, STORAGE_ERRORS):
        return f"Redis (IDP_REDIS_URL) is not usable: {first_line(error)}"
    return f"database migration: {first_line(error)}"


def as_click_exception(error: Exception) -> click.ClickException:
    return click.ClickException(describe(error))


def setting_not_usable(error: Exception) -> click.ClickException:
    """A value the app could not use while it was built (a number that is no number, an
    unknown log level): the configuration, not the code, is what to fix."""
    return click.ClickException(without_credentials(f"a setting is not valid: {first_line(error)}"))
