"""Development-only pages: the outbox of the file senders, so that a newcomer walks the whole
journey without SMTP or Vonage. Registered only when DEV_PAGES is on (never in production)."""

import re

from flask import Blueprint, current_app, render_template

from idp.senders.outbox import read_outbox

bp = Blueprint("devtools", __name__, url_prefix="/_dev")

URL = re.compile(r"https?://[^\s<>\"]+")


def linkified(text: str) -> list[tuple[str, bool]]:
    """The text split into (piece, is_url) so that the template escapes it and links URLs."""
    pieces, position = [], 0
    for match in URL.finditer(text):
        pieces.append((text[position : match.start()], False))
        pieces.append((match.group(0), True))
        position = match.end()
    pieces.append((text[position:], False))
    return pieces


@bp.get("/outbox")
def outbox():
    messages = read_outbox(current_app.config["OUTBOX_DIR"])
    for message in messages:
        message["pieces"] = linkified(message["text"])
    return render_template("dev/outbox.html", messages=messages)
