"""The lock files in requirements/ (./dev lock): every package pinned with its hashes, within
the ranges of pyproject.toml, the test lock at the app lock's versions; and the ranges' floors
past the releases with published advisories."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"app": ROOT / "requirements" / "app.txt", "test": ROOT / "requirements" / "test.txt"}

# The first release that fixed the newest advisory we know of, per dependency (see the comments
# in pyproject.toml); a floor below it would let an install pick a vulnerable release.
FIXED_IN = {
    "authlib": "1.9.1",
    "joserfc": "1.7.6",
    "requests": "2.33.0",
    "cryptography": "50.0.0",
    "gunicorn": "27.0.0",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, tuple[Version, int]]:
    """{package: (pinned version, number of hashes)} of a lock file."""
    text = lock.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line and not line.lstrip().startswith("#"):
            requirement, *hashes = line.split("--hash=")
            name, _, version = requirement.strip().partition("==")
            found[canonical(name)] = (Version(version), len(hashes))
    return found


def requirements(extra: str | None = None) -> list[Requirement]:
    listed = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_with_its_hashes(lock):
    locked = pins(LOCKS[lock])
    assert locked
    assert [name for name, (_, hashes) in locked.items() if hashes == 0] == []


@pytest.mark.parametrize(("lock", "extra"), [("app", None), ("test", None), ("test", "test")])
def test_the_lock_satisfies_pyproject(lock, extra):
    locked = pins(LOCKS[lock])
    for requirement in requirements(extra):
        name = canonical(requirement.name)
        assert name in locked, f"{name} is missing from {LOCKS[lock].name}: ./dev lock"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in {LOCKS[lock].name} is outside {requirement}: ./dev lock"
        )


def test_the_test_lock_runs_the_apps_versions():
    app, test = pins(LOCKS["app"]), pins(LOCKS["test"])
    assert {name: test[name][0] for name in app} == {name: app[name][0] for name in app}


@pytest.mark.parametrize("package", FIXED_IN)
def test_no_release_with_a_published_advisory_satisfies_the_range(package):
    [requirement] = [item for item in requirements() if canonical(item.name) == package]
    fixed = Version(FIXED_IN[package])
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    assert floors and min(floors) >= fixed, f"{requirement} admits releases before {fixed}"
