"""The peer: node oidc-provider (a certified OpenID provider), installed with npm into
bench/.cache/peer and started on 127.0.0.1 with in-memory storage (bench/peer/server.mjs)."""

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "peer"
PACKAGE = "oidc-provider"
VERSION = "9.13.3"


@dataclass
class Peer:
    base: str
    client_id: str
    client_secret: str
    tokens: list[dict]
    version: str
    pid: int


def install() -> Path:
    """The peer's folder with oidc-provider installed (once; later runs reuse it)."""
    installed = CACHE / "node_modules" / PACKAGE / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != VERSION:
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise RuntimeError("the peer needs node and npm (apt-get install nodejs npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text(json.dumps(
            {"name": "idp-bench-peer", "private": True, "type": "module",
             "dependencies": {PACKAGE: VERSION}}, indent=2))
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=CACHE, check=True, timeout=600)
    shutil.copy(HERE / "peer" / "server.mjs", CACHE / "server.mjs")
    return CACHE


@contextlib.contextmanager
def running_peer(port: int, grants: int) -> Iterator[Peer]:
    folder = install()
    process = subprocess.Popen(
        ["node", "server.mjs", str(port), str(grants)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer did not start (exit code {process.wait(10)})")
        started = json.loads(line)
        yield Peer(started["issuer"], started["client_id"], started["client_secret"],
                   started["tokens"], VERSION, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
