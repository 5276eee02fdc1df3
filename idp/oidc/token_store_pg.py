"""The token store's hottest read, the token with its grant, user and client (every refresh
grant and userinfo request), on PostgreSQL with psycopg straight on its cursor.

SQLAlchemy's execution of that SELECT cost about 115 µs more than psycopg's own (measured
under load: 170 against 55 µs), most of it result metadata built from the cursor description
on every call, and that made the refresh grant and userinfo 10-14 % dearer in worker CPU. The
SQL is still the store's Core statement, compiled by SQLAlchemy once per process; values are
converted by psycopg's own adapters. Its parameters are text only (a digest and a kind), so
nothing needs converting on the way in; on the way out, timestamps, stored as naive UTC
(models.UTCDateTime), come back aware UTC as UTCDateTime gives them, by a psycopg loader."""

from datetime import UTC

import psycopg
from psycopg.types.datetime import TimestampLoader
from sqlalchemy import exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select


def serves(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


class _UTCTimestampLoader(TimestampLoader):
    """timestamp without time zone, read as aware UTC (see models.UTCDateTime)."""

    def load(self, data):
        return super().load(data).replace(tzinfo=UTC)


class TextParameterRead:
    """A SELECT whose parameters are all text, run on psycopg's cursor of a SQLAlchemy
    connection (so in its transaction, if it has one). A connection lost on the way is
    invalidated, as SQLAlchemy would, so that the pool never hands it out again."""

    def __init__(self, statement: Select):
        self.statement = statement
        self._sql: str | None = None

    def first(self, connection: Connection, parameters: dict[str, str]) -> tuple | None:
        if self._sql is None:
            self._sql = str(self.statement.compile(dialect=connection.dialect))
        driver = connection.connection.driver_connection
        try:
            with driver.cursor() as cursor:
                cursor.adapters.register_loader("timestamp", _UTCTimestampLoader)
                return cursor.execute(self._sql, parameters).fetchone()
        except psycopg.Error as error:
            if driver.broken:
                connection.invalidate(error)
            # As SQLAlchemy's own execution raises it (OperationalError for a lost server, with
            # connection_invalidated set), so that callers and error handlers see one kind.
            raise exc.DBAPIError.instance(
                self._sql,
                parameters,
                error,
                psycopg.Error,
                hide_parameters=True,
                connection_invalidated=driver.broken,
                dialect=connection.dialect,
            ) from error
