"""The keyed audit chain: each event's hash is an HMAC under AUDIT_KEY (a secret kept out of
the database), so that whoever can write the tables but lacks the key cannot re-chain them;
an anchor file holds the signed head of the chain outside the database."""

import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

ANCHOR_VERSION = 1


class AnchorError(Exception):
    """The anchor file cannot be read or was not signed with this key."""


def _subkey(purpose: str) -> bytes:
    key = current_app.config.get("AUDIT_KEY")
    if not key:
        raise RuntimeError("IDP_AUDIT_KEY is not set")
    return hmac.new(str(key).encode(), purpose.encode(), hashlib.sha256).digest()


def canonical(content: dict) -> bytes:
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def event_mac(content: dict) -> str:
    return hmac.new(_subkey("audit-event"), canonical(content), hashlib.sha256).hexdigest()


def plain_hash(content: dict) -> str:
    """The hash of events written before the chain was keyed."""
    return hashlib.sha256(canonical(content)).hexdigest()


@dataclass(frozen=True)
class Anchor:
    last_event_id: int | None
    events: int
    head: str | None
    keyed_from: int | None

    def content(self) -> dict:
        return {
            "version": ANCHOR_VERSION,
            "last_event_id": self.last_event_id,
            "events": self.events,
            "head": self.head,
            "keyed_from": self.keyed_from,
        }


def _anchor_mac(content: dict) -> str:
    return hmac.new(_subkey("audit-anchor"), canonical(content), hashlib.sha256).hexdigest()


def write_anchor(anchor: Anchor, path: str | os.PathLike) -> None:
    """Written whole or not at all (a temporary file beside it, then renamed), mode 0600."""
    content = anchor.content()
    document = {**content, "mac": _anchor_mac(content)}
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, sort_keys=True)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_anchor(path: str | os.PathLike) -> Anchor:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or "not JSON"
        raise AnchorError(f"cannot read the anchor file: {reason}") from None
    if not isinstance(document, dict):
        raise AnchorError("the anchor file is not an audit anchor")
    mac = document.pop("mac", None)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _anchor_mac(document)):
        raise AnchorError("the anchor file was changed or signed with another IDP_AUDIT_KEY")
    if document.get("version") != ANCHOR_VERSION:
        raise AnchorError("the anchor file has an unknown version")
    return Anchor(
        last_event_id=document["last_event_id"],
        events=document["events"],
        head=document["head"],
        keyed_from=document["keyed_from"],
    )
