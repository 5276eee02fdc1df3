"""A PostgreSQL and a Redis of the test's own (own directory, own port), which it may stop,
restart and take away: never the machine's shared servers. Both start in about a second."""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.servers import HOST, free_port


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_server_user() -> list[str]:
    """initdb and postgres refuse to run as root: then as the `postgres` account."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class OwnPostgres:
    """A throwaway cluster: no fsync (nothing here must survive a crash), trust auth on
    127.0.0.1 only, one database `idp`."""

    def __init__(self):
        self.bin = _postgres_bin()
        # Not under pytest's tmp_path: as root, that is a directory the server's account
        # cannot enter.
        self.directory = Path(tempfile.mkdtemp(prefix="idp-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.uri = f"postgresql+psycopg://postgres@{HOST}:{self.port}/idp"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*_as_server_user(), str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create(self) -> "OwnPostgres":
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", "idp")
        return self

    def start(self) -> None:
        options = f"-c listen_addresses={HOST} -c port={self.port} -c fsync=off "
        options += f"-c unix_socket_directories={self.directory}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.directory / "log"),
            "start",
        )

    def stop(self) -> None:
        # "fast": what a restart by the operator or a failover does to the clients' sessions.
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


class OwnRedis:
    """redis-server without persistence on its own port; stop() and start() keep the port."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "OwnRedis":
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def need(binary_found, what: str) -> None:
    if not binary_found:
        pytest.skip(f"{what} is not installed")
