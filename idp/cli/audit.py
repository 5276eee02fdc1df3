"""`idp audit verify|anchor|export`: the operator's view of the tamper-evident audit trail."""

import json
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from idp import audit
from idp.audit import keyed


@click.group("audit", help="The tamper-evident audit trail.")
def audit_group():
    pass


@audit_group.command("verify")
@click.option(
    "--anchor",
    "anchor_path",
    type=click.Path(dir_okay=False),
    help="An anchor file from `idp audit anchor`: also refuse a trail shorter than it, "
    "or different at its event.",
)
@with_appcontext
def verify(anchor_path):
    """Check the keyed chain: exits non-zero when a row was changed, removed, inserted or
    re-chained."""
    anchor = _read_anchor(anchor_path) if anchor_path else None
    result = _checked(audit.verify_chain(anchor=anchor))
    against = f", up to the anchor's event {anchor.last_event_id}" if anchor else ""
    click.echo(f"audit trail intact: {result.checked} events{against}")


@audit_group.command("anchor")
@click.option(
    "--to",
    "path",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write (outside the database; replaced whole, mode 0600).",
)
@with_appcontext
def anchor(path):
    """Verify the chain, then write its head, signed with IDP_AUDIT_KEY, to a file."""
    result = _checked(audit.verify_chain())
    try:
        keyed.write_anchor(audit.anchor_of(result), path)
    except OSError as error:
        raise click.ClickException(f"cannot write the anchor file: {error.strerror}") from None
    click.echo(f"audit anchor written: {result.checked} events, up to event {result.last_event_id}")


def _read_anchor(path: str) -> keyed.Anchor:
    try:
        return keyed.read_anchor(path)
    except keyed.AnchorError as error:
        raise click.ClickException(str(error)) from None


def _checked(result: audit.ChainCheck) -> audit.ChainCheck:
    if not result.ok:
        raise click.ClickException(
            f"audit trail broken at event {result.broken_at}: {result.problem} "
            f"({result.checked} events checked)"
        )
    return result


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
