"""Static files with a content hash in their URL, so that browsers may cache them for a year and
still see every change at once."""

import hashlib
from functools import cache
from pathlib import Path

from flask import Flask, url_for

ONE_YEAR = 365 * 24 * 3600


def install_assets(app: Flask) -> None:
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = ONE_YEAR
    static_folder = Path(app.static_folder)

    @cache
    def fingerprint(filename: str) -> str:
        return hashlib.sha256((static_folder / filename).read_bytes()).hexdigest()[:12]

    def asset(filename: str) -> str:
        return url_for("static", filename=filename, v=fingerprint(filename))

    @app.context_processor
    def asset_helper():
        return {"asset": asset}
