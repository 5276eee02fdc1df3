"""Draining before a stop (idp.platform.drain), on gunicorn as production runs it: with the
drain file the instance still serves, /readyz says "draining" (the balancer takes it out), and
every response closes its connection; a drain file left from an earlier stop is forgotten at
start."""

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idp.demo.servers import free_port
from tests.servers import HOST

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def instance(tmp_path):
    """gunicorn with the package's settings on a free port; yields (port, drain file)."""
    port = free_port()
    drain_file = tmp_path / "draining"
    drain_file.write_text("")  # left over from an earlier stop
    env = {
        **os.environ,
        "IDP_CONFIG": "development",
        "IDP_INSTANCE_PATH": str(tmp_path / "instance"),
        "IDP_DRAIN_FILE": str(drain_file),
        "GUNICORN_BIND": f"{HOST}:{port}",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:idp.gunicorn_conf", "idp.wsgi:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                get(port, "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not answer")
        yield port, drain_file
    finally:
        process.terminate()
        process.wait(30)


def get(port: int, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Connection", ""), response.read()
    finally:
        connection.close()


def test_a_draining_instance_leaves_the_balancer_but_keeps_serving(instance):
    port, drain_file = instance
    assert not drain_file.exists()  # the earlier stop's file is gone: the instance serves
    status, connection, _ = get(port, "/healthz")
    assert (status, connection.lower()) == (200, "keep-alive")

    drain_file.write_text("")

    status, connection, body = get(port, "/readyz")
    assert status == 503 and b"draining" in body
    status, connection, _ = get(port, "/healthz")
    assert status == 200  # still serving what comes ...
    assert connection.lower() == "close"  # ... and sends clients elsewhere for the next one
