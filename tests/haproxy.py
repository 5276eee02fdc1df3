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


# A request carrying this header with a server's name ("instance1", ...) goes to that server
# while it is up: a test's way to send one step of a login to a chosen instance.
PIN_HEADER = "X-Test-Instance"


def configuration(
    port: int, backends: Sequence[tuple[str, int]], balance: str, checks: str | None = None
) -> str:
    """The configuration docs/haproxy.cfg documents, for loopback: no logging, timeouts of its
    own, and health checks of /readyz every `checks` (e.g. "200ms") when given — without them
    (the servers a caller starts are up when it starts the balancer) a stopped server still
    gets requests."""
    names = [f"instance{index}" for index in range(1, len(backends) + 1)]
    servers = "\n".join(
        f"    server {name} {host}:{backend_port}"
        for name, (host, backend_port) in zip(names, backends, strict=True)
    )
    pins = "\n".join(
        f"    use-server {name} if {{ req.hdr({PIN_HEADER}) -m str {name} }}" for name in names
    )
    health = (
        "    option httpchk GET /readyz\n"
        "    http-check expect status 200\n"
        # A check waits longer than its interval for the answer: a busy instance is slow,
        # not gone. Two failures in a row take an instance out.
        "    timeout check 2s\n"
        f"    default-server check inter {checks} fall 2 rise 1\n"
        if checks
        else ""
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
    # Short, for tests of slow clients; docs/haproxy.cfg says 10s.
    timeout http-request 2s
    # A server that refuses the connection (stopped, killed) costs a retry elsewhere, not an
    # error: nothing reached it.
    retries 2
    option redispatch 1

frontend idp
    bind {HOST}:{port}
    default_backend instances

backend instances
    balance {balance}
{health}{pins}
{servers}
"""


@contextlib.contextmanager
def running_haproxy(
    backends: Sequence[tuple[str, int]],
    balance: str = "leastconn",
    port: int | None = None,
    checks: str | None = None,
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
    balancer.config.write_text(configuration(port, backends, balance, checks))
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
