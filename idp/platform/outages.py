"""What a request meets when a service it depends on is away for a moment: the database
(restarted, failing over, not reachable) or the shared counters (Redis). Either becomes 503
with Retry-After, never 500: nothing the request was about is assumed done, and the caller
tries again. The database's errors are those that say the server or the connection is gone,
not those of a statement (an IntegrityError stays a bug or a conflict, answered as such)."""

from sqlalchemy import exc

from idp.platform.extensions import db
from idp.platform.ratelimit import STORAGE_ERRORS

# Connection refused or lost, server shutting down or starting up, a statement cancelled by
# statement_timeout (psycopg's QueryCanceled is an OperationalError), no pooled connection
# free within the pool's timeout.
DATABASE_ERRORS = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    exc.DisconnectionError,
)

# The shared counters: without them no password is checked and no SMS is sent (fail closed),
# but everything that needs no counter goes on.
COUNTERS_ERRORS = STORAGE_ERRORS

UNAVAILABLE_ERRORS = (*DATABASE_ERRORS, *COUNTERS_ERRORS)

# Long enough for a restart of PostgreSQL or Redis to finish, short enough not to lose people.
RETRY_AFTER_SECONDS = 3


def retry_after() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


def kind_of(error: BaseException) -> str:
    """Which service is away: "database" or "counters" (the page says what still works)."""
    return "counters" if isinstance(error, COUNTERS_ERRORS) else "database"


def roll_back() -> None:
    """Ends the request's transaction; its connection may be the one that died, whose rollback
    fails too (and which the pool has invalidated already)."""
    try:
        db.session.rollback()
    except DATABASE_ERRORS:
        db.session.invalidate()
