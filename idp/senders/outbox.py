"""Development senders write here (file) or print (console). Both announce loudly that they
are for development: a production deployment must never use them (the config refuses)."""

import json
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

BANNER = "*** DEVELOPMENT {kind} BACKEND: nothing is really sent ***"


class FileOutbox:
    """One JSON file per message, named so that a directory listing sorts by time."""

    def __init__(self, directory: str, kind: str):
        self.directory = Path(directory)
        self.kind = kind

    def write(self, message) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC)
        name = f"{stamp:%Y%m%dT%H%M%S%f}-{self.kind}-{uuid.uuid4().hex[:8]}.json"
        path = self.directory / name
        record = {"kind": self.kind, "sent_at": stamp.isoformat(), **asdict(message)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
        tmp.replace(path)  # readers never see half a file
        return path


def read_outbox(directory: str, kind: str | None = None) -> list[dict]:
    """Messages in the outbox, newest first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    pattern = f"*-{kind}-*.json" if kind else "*.json"
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob(pattern), reverse=True)
    ]


def print_loudly(kind: str, lines: list[str]) -> None:
    print(BANNER.format(kind=kind.upper()), *lines, sep="\n", file=sys.stderr, flush=True)
