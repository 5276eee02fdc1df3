"""Slow clients (slowloris): connections that send their request headers a byte at a time.

gunicorn's gthread worker cannot bound them: it waits up to 5 s for a new connection's first
byte outside its threads, but once a byte has come, a thread reads the rest with no deadline
(gunicorn has no header timeout; `timeout` watches the worker's heartbeat, not a request), so
a few slow connections hold every thread. The design therefore lets only the proxy reach an
instance (the chart's NetworkPolicy: HTTP from the ingress controller's namespace alone), and
the proxy bounds header time (HAProxy's `timeout http-request`, docs/haproxy.cfg) and hands an
instance only complete requests. These tests hold SLOW_CONNECTIONS slow connections open:
through HAProxy the instance still answers within 5 s; straight at it, it does not."""

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.cluster import running_cluster
from tests.servers import HOST

SLOW_CONNECTIONS = 10  # more than an instance's threads (GUNICORN_THREADS, 4)
BYTE_INTERVAL = 0.3
ANSWER_SECONDS = 5
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: login.example.com\r\nUser-Agent: slow" + b"w" * 200
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def balanced_instance(database_uri, tmp_path_factory):
    """One instance of the package behind HAProxy: (HAProxy's base URL, the instance)."""
    with running_cluster(database_uri, tmp_path_factory.mktemp("slow"), count=1) as cluster:
        yield cluster.issuer, cluster.instances[0]


def dribble(port: int, stop: threading.Event, closed: list[float]) -> None:
    """Sends REQUEST's headers a byte every BYTE_INTERVAL until `stop` or the server closes
    (then appends the time it did to `closed`)."""
    with socket.create_connection((HOST, port), timeout=10) as connection:
        for byte in REQUEST:
            if stop.wait(BYTE_INTERVAL):
                return
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                closed.append(time.monotonic())
                return


@contextlib.contextmanager
def slow_clients(base: str, count: int = SLOW_CONNECTIONS) -> Iterator[list[float]]:
    """`count` slow connections to `base` while the block runs; yields the times at which the
    server closed one."""
    port = int(base.rsplit(":", 1)[1])
    stop, closed = threading.Event(), []
    threads = [
        threading.Thread(target=dribble, args=(port, stop, closed), daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    time.sleep(2 * BYTE_INTERVAL)  # every one has sent its first bytes
    try:
        yield closed
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def answers_within(url: str, seconds: float) -> bool:
    try:
        return requests.get(url, timeout=seconds).status_code == 200
    except requests.Timeout:
        return False


def test_through_the_proxy_slow_clients_leave_health_and_login_answering(balanced_instance):
    base, _ = balanced_instance
    with slow_clients(base):
        started = time.monotonic()
        assert answers_within(base + "/healthz", ANSWER_SECONDS)
        assert answers_within(base + "/login", ANSWER_SECONDS)
        assert time.monotonic() - started < ANSWER_SECONDS


def test_the_proxy_drops_a_client_that_takes_too_long_for_its_headers(balanced_instance):
    base, _ = balanced_instance
    started = time.monotonic()
    with slow_clients(base, count=1) as closed:
        # tests/haproxy.py's `timeout http-request` is 2 s (docs/haproxy.cfg: 10 s).
        deadline = started + 6
        while not closed and time.monotonic() < deadline:
            time.sleep(0.1)
    assert closed, "HAProxy kept a slow client's connection open"
    assert closed[0] - started < 5


def test_straight_at_an_instance_slow_clients_hold_every_thread(balanced_instance):
    # Why only the proxy may reach an instance: gunicorn has no header timeout.
    _, instance = balanced_instance
    with slow_clients(instance.base):
        assert not answers_within(instance.base + "/healthz", 3)
    assert answers_within(instance.base + "/healthz", ANSWER_SECONDS)  # free once they are gone


def test_the_documented_proxy_bounds_header_time():
    text = (ROOT / "docs" / "haproxy.cfg").read_text()
    assert "timeout http-request 10s" in text
