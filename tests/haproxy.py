"""HAProxy in front of local servers, as production balances identity provider instances:
least connections first, keep-alive on both sides. Debian's haproxy (apt-get install haproxy),
run in the foreground on a port of its own with a configuration file in a temporary folder;
never the system's service.

    with running_haproxy([("127.0.0.1", 8001), ("127.0.0.1", 8002)]) as balancer:
        requests.get(balancer.base + "/healthz")
"""

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from idp.demo.servers import free_port
from tests.servers import HOST

# Where Debian puts it; /usr/sbin is not on every user's PATH.
DEBIAN_BINARY = Path("/usr/sbin/haproxy")
START_SECONDS = 10


@dataclass
class Balancer:
    base: str  # http://127.0.0.1:<port>
    port: int
    config: Path  # the configuration it runs, for a look when something goes wrong
    log: Path  # its stderr


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (str(DEBIAN_BINARY) if DEBIAN_BINARY.exists() else None)
    if found is None:
        raise RuntimeError("HAProxy is not installed (apt-get install haproxy)")
    return found


def configuration(port: int, backends: Sequence[tuple[str, int]], balance: str) -> str:
    """The configuration docs/haproxy.cfg documents, for loopback: no logging, no health checks
    (the servers a caller starts are up when it starts the balancer), timeouts of its own."""
    servers = "\n".join(
        f"    server instance{index} {host}:{backend_port}"
        for index, (host, backend_port) in enumerate(backends, start=1)
    )
    return f"""\
global
    maxconn 1000

defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend idp
    bind {HOST}:{port}
    default_backend instances

backend instances
    balance {balance}
{servers}
"""


@contextlib.contextmanager
def running_haproxy(
    backends: Sequence[tuple[str, int]], balance: str = "leastconn", port: int | None = None
) -> Iterator[Balancer]:
    """HAProxy balancing `backends` ((host, port) pairs) on `port` (default: a free one; give
    it when the servers behind must know their public address beforehand, as the identity
    provider's issuer); stopped and its folder removed on exit. Raises RuntimeError with
    HAProxy's own words if it refuses the configuration or does not listen within
    START_SECONDS."""
    if not backends:
        raise ValueError("HAProxy needs at least one backend")
    binary = haproxy_binary()
    folder = Path(tempfile.mkdtemp(prefix="idp-haproxy-"))
    port = port or free_port()
    balancer = Balancer(
        f"http://{HOST}:{port}", port, folder / "haproxy.cfg", folder / "haproxy.log"
    )
    balancer.config.write_text(configuration(port, backends, balance))
    try:
        checked = subprocess.run(
            [binary, "-c", "-q", "-f", str(balancer.config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if checked.returncode != 0:
            raise RuntimeError(f"HAProxy refused its configuration: {checked.stderr.strip()}")
        with balancer.log.open("w") as log:
            # -db: in the foreground, so that terminate() stops it and nothing is left behind.
            process = subprocess.Popen(
                [binary, "-db", "-f", str(balancer.config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until_listening(port, process, balancer.log)
            yield balancer
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_until_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.05)
