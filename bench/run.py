"""Benchmarks, one command: python -m bench.run [--logins N] [--seconds S] [--clients C]

Prints a table: argon2id verify time for the configured cost and for argon2-cffi's defaults,
full logins per second (password + SMS PIN, the PIN read from the file SMS backend's outbox)
against gunicorn started here on 127.0.0.1 with a temporary SQLite database, and a profile of
the login POST naming where its time goes. Every loop is bounded in count and in time.

To add a scenario (the token endpoint, userinfo, discovery): write a function that takes the
running `Server` and the parsed arguments and returns `Row`s, and append it to SERVER_SCENARIOS.
"""

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench: correct horse battery staple"  # noqa: S105
HOST = "127.0.0.1"
# The limits that protect production would stop a benchmark after a few logins.
UNLIMITED = {
    "IDP_RATELIMIT_ENABLED": "false",
    "IDP_SMS_LIMIT_PER_NUMBER": "1000000 per day",
    "IDP_SMS_LIMIT_PER_ACCOUNT": "1000000 per day",
    "IDP_SMS_BUDGET_MESSAGES": "1000000 per hour",
    "IDP_SMS_BUDGET_EUR_PER_HOUR": "1000000.0",
    "IDP_LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP": "1000000 per minute",
}


@dataclass
class Row:
    what: str
    figure: str
    note: str = ""


@dataclass
class Server:
    base: str
    env: dict
    outbox: Path
    usernames: list[str]


# --- argon2 ------------------------------------------------------------------------------------


def configured_argon2() -> dict:
    settings: dict = {}
    exec((ROOT / "config" / "default.py").read_text(), settings)  # noqa: S102 (our own file)
    return {
        "time_cost": settings["ARGON2_TIME_COST"],
        "memory_cost": settings["ARGON2_MEMORY_COST_KIB"],
        "parallelism": settings["ARGON2_PARALLELISM"],
    }


def verify_ms(hasher: PasswordHasher, rounds: int, deadline: float) -> float:
    encoded = hasher.hash(PASSWORD)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify(encoded, PASSWORD)
        times.append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    return statistics.median(times) * 1000


def verifies_per_second(hasher: PasswordHasher, threads: int, seconds: float) -> float:
    encoded = hasher.hash(PASSWORD)
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def work(index: int) -> None:
        while time.monotonic() < stop:
            hasher.verify(encoded, PASSWORD)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / seconds


def argon2_rows(args) -> list[Row]:
    cores = len(os.sched_getaffinity(0))
    rows = []
    for label, params in (
        ("configured", configured_argon2()),
        ("argon2-cffi default", {}),
    ):
        hasher = PasswordHasher(**params)
        p = hasher.time_cost, hasher.memory_cost // 1024, hasher.parallelism
        cost = f"t={p[0]}, m={p[1]} MiB, p={p[2]}"
        deadline = time.monotonic() + args.seconds / 2
        rows.append(Row(f"argon2id verify, {label}", f"{verify_ms(hasher, 30, deadline):.1f} ms",
                        f"{cost}, one at a time"))
        rate = verifies_per_second(hasher, cores, min(3.0, args.seconds / 4))
        rows.append(Row(f"argon2id verifies/s, {label}", f"{rate:.0f} /s",
                        f"{cores} threads on {cores} cores: the ceiling for logins"))
    return rows


# --- a real server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def newest_pin(outbox: Path, phone: str) -> str:
    for path in sorted(outbox.glob("*-sms-*.json"), reverse=True):
        message = json.loads(path.read_text(encoding="utf-8"))
        if message["to"] == phone:
            return re.search(r"#(\d{6})$", message["text"]).group(1)
    raise LookupError(f"no SMS to {phone}")


def newest_link(outbox: Path, address: str) -> str:
    for path in sorted(outbox.glob("*-mail-*.json"), reverse=True):
        message = json.loads(path.read_text(encoding="utf-8"))
        if message["to"] == address:
            return re.search(r"https?://\S+/activate/\S+", message["text"]).group(0)
    raise LookupError(f"no mail to {address}")


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def phone_of(index: int) -> str:
    return f"+491511{index:07d}"


def submit(session: requests.Session, url: str, data: dict) -> requests.Response:
    page = session.get(url, timeout=30)
    return session.post(
        url, data={"csrf_token": csrf(page.text), **data}, timeout=30, allow_redirects=False
    )


def activate(server: Server, index: int, username: str) -> None:
    subprocess.run(
        ["idp", "users", "invite", username, "--email", f"{username}@example.com",
         "--phone", phone_of(index), "--name", f"Bench {index}"],
        env=server.env, check=True, capture_output=True, timeout=60,
    )
    link = newest_link(server.outbox, f"{username}@example.com")
    path = "/" + link.split("/", 3)[3]
    with requests.Session() as session:
        response = submit(session, server.base + path,
                          {"password": PASSWORD, "password_confirm": PASSWORD})
        assert response.status_code == 303, response.text[:300]
        pin = newest_pin(server.outbox, phone_of(index))
        assert submit(session, server.base + "/pin", {"pin": pin}).status_code == 200


def full_login(server: Server, index: int) -> None:
    with requests.Session() as session:
        response = submit(session, server.base + "/login",
                          {"username": server.usernames[index], "password": PASSWORD})
        assert response.status_code == 303, response.status_code
        pin = newest_pin(server.outbox, phone_of(index))
        response = submit(session, server.base + "/pin", {"pin": pin})
        assert response.status_code == 303, response.status_code


@contextlib.contextmanager
def running_server(args) -> Iterator[Server]:
    work = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    port = free_port()
    env = {
        **os.environ,
        **UNLIMITED,
        "IDP_CONFIG": "development",
        "IDP_INSTANCE_PATH": str(work / "instance"),
        "IDP_SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'idp.sqlite3'}",
        "IDP_OUTBOX_DIR": str(work / "outbox"),
        "IDP_ISSUER": f"http://{HOST}:{port}",
        "IDP_LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"{HOST}:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
    }
    (work / "prometheus").mkdir()
    subprocess.run(["idp", "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    log = (work / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/healthz", timeout=2)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "gunicorn.log").read_text()) from None
                time.sleep(0.2)
        server = Server(base, env, work / "outbox", [f"bench{i}" for i in range(args.clients)])
        for index, username in enumerate(server.usernames):
            activate(server, index, username)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def login_rows(server: Server, args) -> list[Row]:
    stop = time.monotonic() + args.seconds
    done = [0] * args.clients

    def client(index: int) -> None:
        while time.monotonic() < stop and sum(done) < args.logins:
            full_login(server, index)
            done[index] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for future in [pool.submit(client, index) for index in range(args.clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    logins = sum(done)
    return [
        Row("full logins/s under gunicorn", f"{logins / elapsed:.1f} /s",
            f"{logins} logins (password + PIN, 4 requests each) by {args.clients} clients "
            f"in {elapsed:.1f} s"),
    ]


# The token endpoint's scenarios join here (refresh grants/s, userinfo/s, discovery/s).
SERVER_SCENARIOS: list[Callable[[Server, argparse.Namespace], list[Row]]] = [login_rows]


# --- profile of the login POST -----------------------------------------------------------------


def profile_rows(args) -> list[Row]:
    """Profiles POST /login in-process (Flask test client, same configuration as above)."""
    work = Path(tempfile.mkdtemp(prefix="idp-profile-"))
    os.environ.update({**UNLIMITED, "IDP_INSTANCE_PATH": str(work / "instance")})
    from flask_migrate import upgrade

    from idp import create_app

    app = create_app("development", {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'idp.sqlite3'}",
        "OUTBOX_DIR": str(work / "outbox"),
        "LOG_LEVEL": "WARNING",
    })
    with app.app_context():
        upgrade()
    result = app.test_cli_runner().invoke(args=[
        "users", "invite", "profiled", "--email", "p@example.com", "--phone", phone_of(0)])
    assert result.exit_code == 0, result.output
    client = app.test_client()
    link = newest_link(work / "outbox", "p@example.com")
    path = "/" + link.split("/", 3)[3]
    page = client.get(path).text
    client.post(path, data={"csrf_token": csrf(page), "password": PASSWORD,
                            "password_confirm": PASSWORD})
    page = client.get("/pin").text
    client.post("/pin", data={"csrf_token": csrf(page), "pin": newest_pin(work / "outbox",
                                                                         phone_of(0))})
    profiler = cProfile.Profile()
    rounds = 20
    for _ in range(rounds):
        login_client = app.test_client()
        token = csrf(login_client.get("/login").text)
        form = {"csrf_token": token, "username": "profiled", "password": PASSWORD}
        profiler.enable()
        response = login_client.post("/login", data=form)
        profiler.disable()
        assert response.status_code == 303, response.status_code
    shutil.rmtree(work, ignore_errors=True)
    return summarize_profile(profiler, rounds)


def summarize_profile(profiler: cProfile.Profile, rounds: int) -> list[Row]:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    buckets = {
        "argon2 verify": ("argon2", "_ffi"),
        "SQLAlchemy + sqlite": ("sqlalchemy", "sqlite3"),
        "SMS to the outbox file": ("senders",),
        "templates + forms": ("jinja2", "flask_wtf", "wtforms"),
    }
    spent = dict.fromkeys(buckets, 0.0)
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        for bucket, markers in buckets.items():
            if any(marker in filename or marker in name for marker in markers):
                spent[bucket] += own
                break
    rows = [Row("login POST, in-process", f"{total / rounds * 1000:.1f} ms",
                f"cProfile over {rounds} POSTs /login (password check, PIN, SMS)")]
    for bucket, seconds in spent.items():
        rows.append(Row(f"  of which {bucket}", f"{seconds / rounds * 1000:.1f} ms",
                        f"{seconds / total:.0%}"))
    other = total - sum(spent.values())
    rows.append(Row("  of which everything else", f"{other / rounds * 1000:.1f} ms",
                    f"{other / total:.0%} (Flask, Werkzeug, the services)"))
    return rows


# --- main --------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    width = max(len(row.what) for row in rows)
    figure = max(len(row.figure) for row in rows)
    for row in rows:
        print(f"{row.what:<{width}}  {row.figure:>{figure}}  {row.note}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=300, help="at most this many logins")
    parser.add_argument("--seconds", type=float, default=20, help="at most this long per scenario")
    parser.add_argument("--clients", type=int, default=8, help="parallel clients (and users)")
    args = parser.parse_args(argv)

    print(f"{len(os.sched_getaffinity(0))} cores, Python {sys.version.split()[0]}", flush=True)
    rows = argon2_rows(args)
    with running_server(args) as server:
        for scenario in SERVER_SCENARIOS:
            rows.extend(scenario(server, args))
    rows.extend(profile_rows(args))
    print_table(rows)


if __name__ == "__main__":
    main()
