"""Two instances of the installed package as one identity provider, as production runs them:
gunicorn masters (`gunicorn -c python:idp.gunicorn_conf idp.wsgi:app`) on ports of their own,
sharing one PostgreSQL database and one Redis database, behind HAProxy (balance leastconn,
health checks of /readyz), the issuer at HAProxy.

    with running_cluster(database_uri, work) as cluster:
        cluster.instances[0].kill()
        requests.get(cluster.issuer + "/healthz")
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from tests.haproxy import PIN_HEADER, running_haproxy
from tests.servers import HOST, free_port

# A Redis database of the cluster tests alone: the rate-limit tests (15) and the quick start
# (14) flush theirs.
REDIS_URL = "redis://127.0.0.1:6379/12"
# HAProxy checks /readyz this often and takes an instance out after two failures: a drain is
# seen within two intervals, and DRAIN_SECONDS waits for it with a margin.
CHECK_INTERVAL = "200ms"
DRAIN_SECONDS = 1.5
# Generous: on a shared CI machine under the tests' own load, a start has taken 20 s.
START_SECONDS = 60


@dataclass
class Instance:
    """One gunicorn master of the package; `start`, `terminate` (a drained stop) and `kill`."""

    name: str  # HAProxy's name for it: instance1, instance2
    port: int
    env: dict
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def drain_file(self) -> Path:
        return self.folder / "draining"

    @property
    def log(self) -> Path:
        return self.folder / "gunicorn.log"

    def start(self) -> None:
        self.launch()
        self.wait_until_ready()

    def launch(self) -> None:
        prometheus = self.folder / "prometheus"
        prometheus.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "GUNICORN_BIND": f"{HOST}:{self.port}",
            "IDP_DRAIN_FILE": str(self.drain_file),
            "PROMETHEUS_MULTIPROC_DIR": str(prometheus),
        }
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "python:idp.gunicorn_conf",
                    "idp.wsgi:app",
                ],
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        # HAProxy's next check (rise 1) takes it in.
        time.sleep(DRAIN_SECONDS)

    def terminate(self) -> None:
        """A stop as the chart's preStop and a VM's unit make it: drain, wait for the balancer
        to see it, then SIGTERM, and gunicorn finishes what is in flight."""
        self.drain_file.write_text("")
        time.sleep(DRAIN_SECONDS)
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def signal(self, number: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if number == signal.SIGKILL:
            # The worker too: a killed master leaves its worker serving until it notices.
            for worker in worker_pids(self.process.pid):
                os.kill(worker, signal.SIGKILL)
        self.process.send_signal(number)
        self.process.wait(timeout=40)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@dataclass
class Cluster:
    issuer: str  # HAProxy's address
    instances: list[Instance]
    outbox: Path  # the file senders' outbox, shared by the instances
    env: dict = field(default_factory=dict)

    def pinned(self, instance: Instance) -> dict:
        """Headers that send a request to `instance` (while it is up)."""
        return {PIN_HEADER: instance.name}

    def restore(self) -> None:
        """Every instance up again, after a test stopped or killed one."""
        for instance in self.instances:
            if not instance.running:
                instance.start()


def instance_environment(database_uri: str, issuer: str, work: Path) -> dict:
    env = {
        **os.environ,
        # Cheap argon2 and no request limits, as the other tests; file senders into `outbox`.
        "IDP_CONFIG": "testing",
        "IDP_SQLALCHEMY_DATABASE_URI": database_uri,
        "IDP_ISSUER": issuer,
        "IDP_OUTBOX_DIR": str(work / "outbox"),
        "IDP_REDIS_URL": REDIS_URL,
        # HAProxy is the one proxy in front; it adds the client's address to X-Forwarded-For.
        "IDP_TRUSTED_PROXIES": "1",
        "IDP_INSTANCE_PATH": str(work / "instance"),
        # INFO: the access lines, which tell the tests which instance served a request.
        "IDP_LOG_LEVEL": "INFO",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@contextlib.contextmanager
def running_cluster(
    database_uri: str, work: Path, count: int = 2, port: int | None = None
) -> Iterator[Cluster]:
    """`count` instances on a migrated database behind HAProxy on `port` (default: a free
    one); every one stopped on exit."""
    balancer_port = port or free_port()
    issuer = f"http://{HOST}:{balancer_port}"
    env = instance_environment(database_uri, issuer, work)
    instances = [
        Instance(f"instance{index}", free_port(), env, work / f"instance{index}")
        for index in range(1, count + 1)
    ]
    redis.Redis.from_url(REDIS_URL).flushdb()  # counters of an earlier run
    try:
        # Together, as the pods of a fresh installation start.
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.wait_until_ready()
        with running_haproxy(
            [(HOST, instance.port) for instance in instances],
            port=balancer_port,
            checks=CHECK_INTERVAL,
        ):
            yield Cluster(issuer, instances, work / "outbox", env)
    finally:
        for instance in instances:
            instance.signal(signal.SIGTERM)
