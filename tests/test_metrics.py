"""Prometheus metrics: off by default, counted where the events happen, summed over gunicorn's
worker processes in multiprocess mode."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import requests
from prometheus_client import REGISTRY

from idp.demo.servers import free_port
from idp.errors import SendError
from idp.platform import metrics
from idp.senders import SmsReceipt
from tests.conftest import PASSWORD, activate, login, post_form

ROOT = Path(__file__).resolve().parents[1]


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class PricedSms:
    def __init__(self, inner, price: str):
        self.inner, self.price = inner, price

    def send(self, message):
        self.inner.send(message)
        return SmsReceipt(message_id="m-1", price=self.price)


class BrokenSms:
    def send(self, message):
        raise SendError("provider down")


def test_metrics_are_not_served_unless_enabled(client):
    assert client.get("/metrics").status_code == 404


def test_requests_are_not_timed_unless_metrics_are_enabled(client):
    # The histogram costs every request a lock and a write: only worth it when scraped.
    before = sample("idp_request_duration_seconds_count", endpoint="login.form", method="GET")
    assert client.get("/login").status_code == 200
    assert (
        sample("idp_request_duration_seconds_count", endpoint="login.form", method="GET") == before
    )


def test_metrics_on_their_own_port_are_not_served_by_the_app(make_app):
    app = make_app(METRICS_ENABLED=True, METRICS_PORT=9100)
    assert app.test_client().get("/metrics").status_code == 404


def test_logins_pins_and_sms_cost_are_counted(make_app, outbox):
    app = make_app(METRICS_ENABLED=True)
    client = app.test_client()
    app.extensions["idp.sms"] = PricedSms(app.extensions["idp.sms"], "0.0735")
    before = {
        "ok": sample("idp_logins_total", result="ok"),
        "rejected": sample("idp_logins_total", result="password_rejected"),
        "sent": sample("idp_pins_sent_total", purpose="login"),
        "pin_ok": sample("idp_pin_checks_total", purpose="login", result="ok"),
        "cost": sample("idp_sms_cost_eur_total"),
        "timed": sample(
            "idp_request_duration_seconds_count", endpoint="login.submit", method="POST"
        ),
    }
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": "wrong " + PASSWORD})
    login(client, outbox)

    assert sample("idp_logins_total", result="ok") == before["ok"] + 1
    assert sample("idp_logins_total", result="password_rejected") == before["rejected"] + 1
    assert sample("idp_pins_sent_total", purpose="login") == before["sent"] + 1
    assert sample("idp_pin_checks_total", purpose="login", result="ok") == before["pin_ok"] + 1
    # Two SMS: the activation PIN and the login PIN.
    assert round(sample("idp_sms_cost_eur_total") - before["cost"], 4) == 0.147
    assert (
        sample("idp_request_duration_seconds_count", endpoint="login.submit", method="POST")
        == before["timed"] + 2
    )
    page = client.get("/metrics")
    assert page.status_code == 200
    assert 'idp_logins_total{result="ok"}' in page.text


def test_a_failed_pin_sms_is_counted(make_app, outbox):
    app = make_app()
    client = app.test_client()
    activate(app, client, outbox)
    app.extensions["idp.sms"] = BrokenSms()
    failures = sample("idp_pin_send_failures_total", purpose="login")
    response = post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 503
    assert sample("idp_pin_send_failures_total", purpose="login") == failures + 1


def test_tokens_issued_are_counted_by_grant(idp, browser, rp):
    before = {
        grant: sample("idp_tokens_issued_total", grant=grant)
        for grant in ("authorization_code", "refresh_token")
    }
    token = rp.sign_in(browser)
    refreshed = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refreshed.status_code == 200
    # A refused grant counts nothing.
    again = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert again.status_code == 400
    assert (
        sample("idp_tokens_issued_total", grant="authorization_code")
        == before["authorization_code"] + 1
    )
    assert sample("idp_tokens_issued_total", grant="refresh_token") == before["refresh_token"] + 1


def test_metrics_port_serves_the_registry(make_app):
    port = free_port()
    server, thread = metrics.start_metrics_server(
        {"METRICS_ENABLED": True, "METRICS_PORT": port, "METRICS_ADDRESS": "127.0.0.1"}
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"idp_logins_total" in answer.read()
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_multiprocess_mode_sums_what_every_process_counted(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count_one = "from idp.platform import metrics; metrics.LOGINS.labels(result='ok').inc()"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count_one], env=env, check=True, timeout=60)
    scrape = (
        "from prometheus_client import generate_latest; from idp.platform import metrics; "
        "print(generate_latest(metrics.registry()).decode())"
    )
    text = subprocess.run(
        [sys.executable, "-c", scrape],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'idp_logins_total{result="ok"} 2.0' in text


@contextmanager
def gunicorn(tmp_path: Path, database_uri: str, **settings):
    """gunicorn with gunicorn.conf.py on 127.0.0.1, two workers; yields (base URL, log lines)."""
    port = free_port()
    env = {
        **os.environ,
        "IDP_CONFIG": "testing",
        "IDP_SQLALCHEMY_DATABASE_URI": database_uri,
        "IDP_INSTANCE_PATH": str(tmp_path / "instance"),
        "IDP_OUTBOX_DIR": str(tmp_path / "outbox"),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        **settings,
    }
    log = tmp_path / "gunicorn.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.2)
        yield base, lines
    finally:
        server.terminate()
        server.wait(timeout=30)
        lines.extend(log.read_text().splitlines())


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_under_gunicorn_the_metrics_port_sums_all_workers(tmp_path, database_uri):
    metrics_port = free_port()
    settings = {"IDP_METRICS_ENABLED": "true", "IDP_METRICS_PORT": str(metrics_port)}
    with gunicorn(tmp_path, database_uri, **settings) as (base, _):
        for _ in range(20):
            assert fetch(base + "/healthz")[0] == 200
        assert fetch(base + "/metrics")[0] == 404
        status, text = fetch(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    # 20 requests and the start-up probes, spread over two processes, counted once each.
    served = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("idp_request_duration_seconds_count{")
        and 'endpoint="health.healthz"' in line
    ]
    assert served and sum(served) >= 20


def test_gunicorn_opens_a_control_socket_only_at_a_path_of_the_instances_own(
    tmp_path, database_uri
):
    """gunicorn's default control socket is one path per user: several instances on a host
    would share it. None unless configured; then at the path given."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    with gunicorn(first, database_uri, GUNICORN_CONTROL_SOCKET="") as (_, lines):
        pass
    assert lines and not [line for line in lines if "Control socket" in line]
    control = second / "gunicorn.ctl"
    with gunicorn(second, database_uri, GUNICORN_CONTROL_SOCKET=str(control)):
        assert control.is_socket()
