"""gunicorn's workers take new connections least-connections first (idp.balanced_worker).

Each test runs gunicorn with two workers and a tiny application that answers with the pid of
the worker serving it, so that the test sees which worker holds which keep-alive connection."""

import http.client
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from tests.test_health import unused_port

ROOT = Path(__file__).resolve().parents[1]
WORKER = "idp.balanced_worker.BalancedThreadWorker"
PID_APP = '''
import os
import time


def app(environ, start_response):
    started = time.perf_counter()
    while time.perf_counter() - started < 0.002:  # a request's worth of work
        pass
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


@contextmanager
def pid_server(tmp_path: Path, workers: int = 2, config: str = ""):
    """gunicorn with the balanced worker; yields (port, the arbiter's process). `config`: a
    gunicorn configuration file's text, run in the arbiter (not the project's: no app, no
    hooks)."""
    (tmp_path / "pid_app.py").write_text(PID_APP)
    (tmp_path / "gunicorn_test.conf.py").write_text(config)
    port = unused_port()
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn_test.conf.py"),
            "--chdir", str(tmp_path), "-k", WORKER, "-w", str(workers), "--threads", "4",
            "-b", f"127.0.0.1:{port}", "pid_app:app",
        ],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while len(worker_pids(server.pid)) < workers or not answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "gunicorn.log").read_text())
            time.sleep(0.1)
        yield port, server
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def worker_pids(arbiter: int) -> list[int]:
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def answers(port: int) -> bool:
    try:
        serving_pid(connection(port))
    except OSError:
        return False
    return True


def connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def serving_pid(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/")
    return int(connection.getresponse().read())


def open_together(port: int, count: int) -> list[tuple[http.client.HTTPConnection, int]]:
    """`count` keep-alive connections opened at the same instant, as a proxy or load driver
    does; each serves a few requests and stays open. Returns them with their worker's pid."""
    opened: list[tuple[http.client.HTTPConnection, int]] = []
    start = threading.Barrier(count)

    def client():
        client_connection = connection(port)
        start.wait()
        for _ in range(5):
            pid = serving_pid(client_connection)
        opened.append((client_connection, pid))

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return opened


def spread(port: int, count: int) -> list[int]:
    """Connections per worker for `count` connections opened together, closed afterwards."""
    opened = open_together(port, count)
    for connection, _ in opened:
        connection.close()
    time.sleep(0.3)  # the workers see the connections close
    return sorted(Counter(pid for _, pid in opened).values())


def test_the_project_configuration_runs_the_balanced_worker(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["worker_class"] == WORKER


def test_keep_alive_connections_opened_together_spread_evenly_over_the_workers(tmp_path):
    # gunicorn's own gthread worker: 3 + 5 or 2 + 6 in two rounds of three, 1 + 7 at times.
    with pid_server(tmp_path) as (port, _):
        assert [spread(port, 8) for _ in range(6)] == [[4, 4]] * 6
        assert spread(port, 16) == [8, 8]


def test_a_worker_that_does_not_accept_does_not_hold_up_new_connections(tmp_path):
    with pid_server(tmp_path) as (port, server):
        first = connection(port)
        busy = serving_pid(first)
        (idle,) = set(worker_pids(server.pid)) - {busy}
        # The idle worker holds fewer connections, so the busy one leaves new ones to it; a
        # stopped worker never takes them, and the busy one must after its hand-off.
        os.kill(idle, signal.SIGSTOP)
        try:
            started = time.monotonic()
            second = connection(port)
            assert serving_pid(second) == busy
            assert time.monotonic() - started < 2
        finally:
            os.kill(idle, signal.SIGCONT)
        first.close()
        second.close()


def test_a_stopping_worker_is_left_no_new_connections(tmp_path):
    # A hand-off long enough to see: a connection left to the stopping worker would wait 3 s.
    slow_handoff = "import idp.balanced_worker\nidp.balanced_worker.HANDOFF_SECONDS = 3\n"
    with pid_server(tmp_path, config=slow_handoff) as (port, _):
        held = [(c, serving_pid(c)) for c in (connection(port) for _ in range(3))]
        counts = Counter(pid for _, pid in held)
        (busy, _), (stopping, _) = counts.most_common()  # two connections and one
        # The stopping worker drains its connection and accepts no new one, though it holds
        # fewer than the other.
        os.kill(stopping, signal.SIGTERM)
        time.sleep(0.3)
        started = time.monotonic()
        assert serving_pid(connection(port)) == busy
        assert time.monotonic() - started < 1.5



def test_a_killed_workers_place_is_taken_by_its_successor(tmp_path):
    with pid_server(tmp_path) as (port, server):
        victim = worker_pids(server.pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in worker_pids(server.pid) or len(worker_pids(server.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert [spread(port, 8) for _ in range(3)] == [[4, 4]] * 3


def test_three_workers_share_connections_evenly(tmp_path):
    with pid_server(tmp_path, workers=3) as (port, _):
        assert spread(port, 9) == [3, 3, 3]
