"""The peer: node oidc-provider (a certified OpenID provider), installed with npm into
bench/.cache/peer and started on 127.0.0.1 (bench/peer/server.mjs) with one of two storages:
"memory", its built-in storage, which its documentation calls unfit for production, and
"redis", its documented example adapter on a Redis server of its own that appends every write
to a file (appendonly, fsync every second: Redis's usual production setting)."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from idp.demo.servers import free_port

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "peer"
PACKAGE = "oidc-provider"
VERSION = "9.13.3"
DEPENDENCIES = {PACKAGE: VERSION, "ioredis": "5.8.2"}
STORAGES = ("memory", "redis")


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
    if not all(installed_version(name) == version for name, version in DEPENDENCIES.items()):
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise RuntimeError("the peer needs node and npm (apt-get install nodejs npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text(
            json.dumps(
                {
                    "name": "idp-bench-peer",
                    "private": True,
                    "type": "module",
                    "dependencies": DEPENDENCIES,
                },
                indent=2,
            )
        )
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CACHE,
            check=True,
            timeout=600,
        )
    for script in ("server.mjs", "redis_adapter.mjs"):
        shutil.copy(HERE / "peer" / script, CACHE / script)
    return CACHE


def installed_version(name: str) -> str | None:
    package = CACHE / "node_modules" / name / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else None


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server for the peer alone, persisting as production would; its URL."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("the Redis-backed peer needs redis-server (apt-get install redis)")
    folder = Path(tempfile.mkdtemp(prefix="idp-bench-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the peer's Redis server did not start") from None
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running_peer(port: int, grants: int, storage: str = "memory") -> Iterator[Peer]:
    folder = install()
    stack = contextlib.ExitStack()
    env = dict(os.environ)
    if storage == "redis":
        env["PEER_REDIS_URL"] = stack.enter_context(redis_server())
    process = subprocess.Popen(
        ["node", "server.mjs", str(port), str(grants)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer did not start (exit code {process.wait(10)})")
        started = json.loads(line)
        yield Peer(
            started["issuer"],
            started["client_id"],
            started["client_secret"],
            started["tokens"],
            VERSION,
            process.pid,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        stack.close()
