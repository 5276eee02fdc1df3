"""tests/haproxy.py: HAProxy in front of two local servers that answer with their own name."""

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import trustme

from tests.haproxy import haproxy_binary, running_haproxy
from tests.servers import HOST

DOCUMENTED = Path(__file__).resolve().parents[1] / "docs" / "haproxy.cfg"

WAIT_SECONDS = 10  # the most a held request waits for its release


@contextmanager
def named_server(name: str, held: threading.Event, release: threading.Event) -> Iterator[int]:
    """An HTTP server on a free port that answers every request with `name`; /hold sets
    `held`, then waits for `release`. Yields its port."""

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/hold":
                held.set()
                release.wait(WAIT_SECONDS)
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((HOST, 0), Answer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def balanced():
    """HAProxy with least connections over servers "a" and "b"; yields (base URL, held,
    release) for a request to /hold."""
    held, release = threading.Event(), threading.Event()
    with (
        named_server("a", held, release) as a,
        named_server("b", held, release) as b,
        running_haproxy([(HOST, a), (HOST, b)]) as balancer,
    ):
        yield balancer.base, held, release


def answer(url: str) -> str:
    with requests.Session() as session:
        session.headers["Connection"] = "close"  # a new connection each time
        response = session.get(url, timeout=WAIT_SECONDS + 5)
    assert response.status_code == 200
    return response.text


def test_both_instances_get_requests(balanced):
    base, _, _ = balanced
    assert {answer(base + "/") for _ in range(10)} == {"a", "b"}


def test_a_busy_instance_gets_no_new_requests_while_the_other_is_idle(balanced):
    base, held, release = balanced
    busy: list[str] = []
    holder = threading.Thread(target=lambda: busy.append(answer(base + "/hold")))
    holder.start()
    try:
        assert held.wait(WAIT_SECONDS), "the held request never reached a server"
        idle = {answer(base + "/") for _ in range(6)}
    finally:
        release.set()
        holder.join(WAIT_SECONDS + 5)
    assert len(idle) == 1 and busy and busy[0] not in idle


def test_a_configuration_haproxy_refuses_is_an_error_in_its_words():
    with (
        pytest.raises(RuntimeError, match="refused its configuration"),
        running_haproxy([(HOST, 9)], balance="no-such-algorithm"),
    ):
        pass


def test_the_documented_vm_configuration_is_valid(tmp_path):
    # docs/haproxy.cfg as an operator installs it, with a certificate where it names one.
    certificate = tmp_path / "login.example.com.pem"
    trustme.CA().issue_cert("login.example.com").private_key_and_cert_chain_pem.write_to_path(
        str(certificate)
    )
    text = DOCUMENTED.read_text()
    assert "/etc/haproxy/certs/login.example.com.pem" in text
    config = tmp_path / "haproxy.cfg"
    config.write_text(text.replace("/etc/haproxy/certs/login.example.com.pem", str(certificate)))
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "balance leastconn" in text
