"""Compile the gettext catalogs (.po -> .mo) whenever a wheel or an editable install is built,
so that translations ship compiled and never go stale against their sources."""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileCatalogs(BuildHookInterface):
    def initialize(self, version, build_data):
        compile_catalogs(Path(self.root) / "idp" / "translations")


def compile_catalogs(root: Path) -> None:
    for po_path in root.glob("*/LC_MESSAGES/*.po"):
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file)
        with po_path.with_suffix(".mo").open("wb") as mo_file:
            write_mo(mo_file, catalog)
