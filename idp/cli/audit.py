"""`idp audit verify|export`: the operator's view of the tamper-evident audit trail."""

import json
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from idp import audit


@click.group("audit", help="The tamper-evident audit trail.")
def audit_group():
    pass


@audit_group.command("verify")
@with_appcontext
def verify():
    """Check the hash chain: exits non-zero when a row was changed, removed or inserted."""
    result = audit.verify_chain()
    if not result.ok:
        raise click.ClickException(
            f"audit trail broken at event {result.broken_at}: {result.problem} "
            f"({result.checked} events checked)"
        )
    click.echo(f"audit trail intact: {result.checked} events")


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use an ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit_group.command("export")
@click.option("--since", help="Only events from this ISO date or time on (UTC unless given).")
@click.option(
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="File to write (default: standard output).",
)
@with_appcontext
def export(since, output):
    """Write events as JSON lines, oldest first."""
    for entry in audit.events_since(parse_since(since)):
        output.write(json.dumps(audit.as_record(entry), ensure_ascii=False, sort_keys=True) + "\n")
