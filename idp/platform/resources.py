"""Where the top-level folders (templates, migrations, config) are: inside the installed wheel
they are bundled under idp/_bundled; in a source checkout they sit beside the idp package."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # idp/


def resource_dir(name: str) -> Path:
    bundled = PACKAGE_DIR / "_bundled" / name
    if bundled.is_dir():
        return bundled
    return PACKAGE_DIR.parent / name
