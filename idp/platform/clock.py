"""The one place that reads the clock; services take `now` as an argument so that tests can
move time without sleeping."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
