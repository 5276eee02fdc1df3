"""The Dockerfile, checked by reading it (no Docker engine runs here): what it copies exists and
is not ignored, the wheel build gets every file the wheel bundles, the runtime runs as a
non-root user, and its command points at files the image contains."""

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, arguments))
    return found


def copies(stage) -> list[tuple[list[str], str, bool]]:
    """(sources, destination, from another stage) of each COPY."""
    result = []
    for keyword, arguments in stage:
        if keyword == "COPY":
            words = arguments.split()
            from_stage = any(word.startswith("--from=") for word in words)
            words = [word for word in words if not word.startswith("--")]
            result.append((words[:-1], words[-1], from_stage))
    return result


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(parts[0], pattern) for pattern in patterns
    )


def test_multi_stage_build_on_the_supported_python():
    froms = [stage[0][1] for stage in stages()]
    assert len(froms) >= 2 and " AS " in froms[0].upper()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in requires.lstrip(">=").split("."))
    for image in froms:
        version = re.search(r"python:(\d+)\.(\d+)", image)
        assert version and tuple(map(int, version.groups())) >= minimum, image


@pytest.mark.parametrize("index", [0, 1])
def test_every_copied_file_exists_and_is_in_the_build_context(index):
    for sources, _, from_stage in copies(stages()[index]):
        if from_stage:
            continue
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_the_wheel_build_gets_everything_the_wheel_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        project["tool"]["hatch"]["build"]["hooks"]["custom"]["path"],
        *wheel["packages"],
        *wheel["force-include"],
    }
    copied = {source for sources, _, _ in copies(stages()[0]) for source in sources}
    assert needed <= copied, f"the build stage lacks {needed - copied}"


def test_runtime_installs_the_wheel_and_runs_as_non_root():
    runtime = stages()[-1]
    runs = " ".join(arguments for keyword, arguments in runtime if keyword == "RUN")
    assert "pip install" in runs and "--no-index" in runs and "/wheels" in runs
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users, "the runtime stage never switches away from root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # The same uid the chart's securityContext sets, so the pod's runAsNonRoot check passes.
    assert user == "10001"


def module_file(dotted: str) -> Path:
    return ROOT / (dotted.replace(".", "/") + ".py")


def test_the_command_serves_the_installed_package():
    """The image runs what the README's quick start runs: configuration and application from
    the installed wheel, nothing copied beside it from the checkout."""
    runtime = stages()[-1]
    command = json.loads(next(arguments for keyword, arguments in runtime if keyword == "CMD"))
    assert command[:2] == ["gunicorn", "-c"]
    config_module = command[2].removeprefix("python:")
    app_module, _, attribute = command[3].partition(":")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    for module in (config_module, app_module):
        assert module.split(".")[0] in packages, f"{module} is not in the wheel"
        assert module_file(module).is_file(), module
    assert command[2].startswith("python:") and attribute == "app"
    assert [sources for sources, _, from_stage in copies(runtime) if not from_stage] == []


def test_dependencies_come_from_the_lock_with_their_hashes():
    """The image holds what was tested: every dependency as pinned in requirements/app.txt,
    each file checked against its hash, and the app on top without resolving anything."""
    build, runtime = stages()[0], stages()[-1]
    copied = {source for sources, _, _ in copies(build) for source in sources}
    assert "requirements/app.txt" in copied
    build_runs = " ".join(arguments for keyword, arguments in build if keyword == "RUN")
    assert "--require-hashes" in build_runs and "-r requirements/app.txt" in build_runs
    runtime_runs = [arguments for keyword, arguments in runtime if keyword == "RUN"]
    installs = [part for run in runtime_runs for part in run.split("&&") if "pip install" in part]
    assert len(installs) == 2, installs
    dependencies, app = installs
    assert "--require-hashes" in dependencies and " -r " in dependencies
    assert "--no-deps" in app and "idp-" in app
