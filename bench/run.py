"""Benchmarks, one command: python -m bench.run [--logins N] [--seconds S] [--clients C]
[--database auto|sqlite|postgresql] [--parts argon2,logins,protocol,profiles]

Prints a table: argon2id verify time for the configured cost and for argon2-cffi's defaults,
full logins per second (password + SMS PIN, the PIN read from the file SMS backend's outbox),
and with password + passkey (tests/webauthn_authenticator.py) with the SMS each saves,
against the shape production runs, started here on 127.0.0.1: two gunicorn instances
(gunicorn.conf.py, one worker of four threads each) behind HAProxy with `balance leastconn`
(tests/haproxy.py; Debian's haproxy), on a temporary database
(PostgreSQL on 127.0.0.1:5432 when it answers, else SQLite), then refresh grants, userinfo,
discovery and JWKS requests per second against it (userinfo and refresh grants once with RFC
9068 JWT access tokens, our default, and once with opaque ones, as the peer issues them) and
against node oidc-provider (installed
with npm into bench/.cache; once with its in-memory storage, once with Redis) under the same
load, with our/peer ratios, and profiles of the login POST and of the token endpoint (refresh
grant) naming where time goes.
Every loop is bounded in count and in time.

To add a scenario: write a function that takes the running `Server` and the parsed arguments
and returns `Row`s, and append it to SERVER_SCENARIOS.
"""

import argparse
import contextlib
import cProfile
import html
import io
import itertools
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from argon2 import PasswordHasher

from bench import load, peer
from idp.demo.servers import free_port
from tests import haproxy
from tests.webauthn_authenticator import SoftAuthenticator

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench: correct horse battery staple"  # noqa: S105
HOST = "127.0.0.1"
# The limits that protect production would stop a benchmark after a few logins: raised, not
# switched off, so that every request still passes the limiter as in production.
UNLIMITED = {
    "IDP_RATELIMIT_LOGIN_PER_IP": "1000000 per minute",
    "IDP_RATELIMIT_LOGIN_PER_NETWORK": "1000000 per minute",
    "IDP_RATELIMIT_PIN_PER_IP": "1000000 per minute",
    "IDP_RATELIMIT_ACTIVATION_PER_IP": "1000000 per minute",
    "IDP_SMS_LIMIT_PER_NUMBER": "1000000 per day",
    "IDP_SMS_LIMIT_PER_ACCOUNT": "1000000 per day",
    "IDP_SMS_LIMIT_TO_NEW_NUMBERS_PER_ACCOUNT": "1000000 per day",
    "IDP_SMS_BUDGET_MESSAGES": "1000000 per hour",
    "IDP_SMS_BUDGET_EUR_PER_HOUR": "1000000.0",
    "IDP_LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK": "1000000 per minute",
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
    database: str
    # Per access token format ("jwt", the default, and "opaque", as the peer issues them):
    # a client registered for it, and one token family per load client of that client.
    clients: dict[str, "BenchClient"] = field(default_factory=dict)
    # The gunicorn master of each instance, whose workers a soak watches.
    masters: list[subprocess.Popen] = field(default_factory=list)
    # Accounts that confirm their logins with a passkey (a software authenticator) instead of
    # the SMS PIN, one per load client: username -> its authenticator.
    passkeys: dict[str, SoftAuthenticator] = field(default_factory=dict)


@dataclass
class BenchClient:
    client_id: str
    client_secret: str
    # {"refresh_token": ..., "access_token": ...} per load client
    tokens: list[dict] = field(default_factory=list)


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
        rows.append(
            Row(
                f"argon2id verify, {label}",
                f"{verify_ms(hasher, 30, deadline):.1f} ms",
                f"{cost}, one at a time",
            )
        )
        rate = verifies_per_second(hasher, cores, min(3.0, args.seconds / 4))
        rows.append(
            Row(
                f"argon2id verifies/s, {label}",
                f"{rate:.0f} /s",
                f"{cores} threads on {cores} cores: the ceiling for logins",
            )
        )
    return rows


# --- a real server -----------------------------------------------------------------------------


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


def idp_command(env: dict, *args: str) -> str:
    """Runs the operator's command line; its output, or an error that quotes its stderr."""
    # The `idp` script of this interpreter's environment, whether or not that is on PATH.
    command = [sys.executable, "-m", "idp", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"idp {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done.stdout


def activate(server: Server, index: int, username: str) -> None:
    idp_command(
        server.env,
        "users",
        "invite",
        username,
        "--email",
        f"{username}@example.com",
        "--phone",
        phone_of(index),
        "--name",
        f"Bench {index}",
    )
    link = newest_link(server.outbox, f"{username}@example.com")
    path = "/" + link.split("/", 3)[3]
    with requests.Session() as session:
        response = submit(
            session, server.base + path, {"password": PASSWORD, "password_confirm": PASSWORD}
        )
        assert response.status_code == 303, response.text[:300]
        pin = newest_pin(server.outbox, phone_of(index))
        assert submit(session, server.base + "/pin", {"pin": pin}).status_code == 200


def password_step(server: Server, session: requests.Session, username: str) -> None:
    response = submit(session, server.base + "/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 303, response.status_code


def pin_login(server: Server, session: requests.Session, index: int, username: str) -> None:
    password_step(server, session, username)
    pin = newest_pin(server.outbox, phone_of(index))
    response = submit(session, server.base + "/pin", {"pin": pin})
    assert response.status_code == 303, response.status_code


def full_login(server: Server, index: int) -> None:
    with requests.Session() as session:
        pin_login(server, session, index, server.usernames[index])


def passkey_options(page: str) -> dict:
    found = re.search(r'id="passkey-options">(.*?)</script>', page, re.S)
    return json.loads(html.unescape(found.group(1)))


def add_passkey_account(server: Server, index: int, username: str) -> None:
    """An account that registers a passkey after a fresh password + PIN login, as an
    administrator does on /account/passkeys."""
    activate(server, index, username)
    authenticator = SoftAuthenticator(HOST, server.base)
    with requests.Session() as session:
        pin_login(server, session, index, username)
        page = session.get(server.base + "/account/passkeys", timeout=30).text
        form = {
            "csrf_token": csrf(page),
            "register": "1",
            "name": "bench",
            "credential": authenticator.register(passkey_options(page)),
        }
        response = session.post(
            server.base + "/account/passkeys", data=form, timeout=30, allow_redirects=False
        )
        assert response.status_code == 303, response.text[:300]
    server.passkeys[username] = authenticator


def passkey_login(server: Server, username: str) -> None:
    with requests.Session() as session:
        password_step(server, session, username)
        page = session.get(server.base + "/login/passkey", timeout=30).text
        form = {
            "csrf_token": csrf(page),
            "passkey": "1",
            "credential": server.passkeys[username].sign(passkey_options(page)),
        }
        response = session.post(
            server.base + "/login/passkey", data=form, timeout=30, allow_redirects=False
        )
        assert response.status_code == 303, response.status_code


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIRECT_URI = "http://127.0.0.1:9/callback"
# Ours, each with a client of its own: RFC 9068 JWTs (the default) and opaque values.
ACCESS_TOKEN_FORMATS = ("jwt", "opaque")
SCOPE = "openid profile email phone offline_access"


@contextlib.contextmanager
def bench_database(kind: str, work: Path) -> Iterator[tuple[str, str]]:
    """A fresh database for one run: (SQLAlchemy URI, description); dropped afterwards."""
    if kind in ("auto", "postgresql"):
        try:
            import psycopg

            admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3)
        except Exception:
            if kind == "postgresql":
                raise
        else:
            name = f"idp_bench_{os.getpid()}_{next(_DATABASES)}"
            with admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name}")
                admin.execute(f"CREATE DATABASE {name}")
                version = admin.execute("SHOW server_version").fetchone()[0]
            try:
                yield (
                    f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                    f"PostgreSQL {version.split()[0]} on 127.0.0.1",
                )
            finally:
                with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
    yield f"sqlite:///{work / 'idp.sqlite3'}", "SQLite in a temporary folder"


_DATABASES = itertools.count()  # one database per server, if a run starts several


def pkce_pair() -> tuple[str, str]:
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def token_families(server: Server, client: BenchClient, count: int) -> list[dict]:
    """Logs bench0 in through the hosted login (password + SMS PIN), then lets the client
    sign in `count` times by single sign-on: one refresh token family per load client."""
    families = []
    with requests.Session() as browser:
        response = submit(
            browser, server.base + "/login", {"username": server.usernames[0], "password": PASSWORD}
        )
        assert response.status_code == 303, response.status_code
        response = submit(
            browser, server.base + "/pin", {"pin": newest_pin(server.outbox, phone_of(0))}
        )
        assert response.status_code == 303, response.status_code
        for index in range(count):
            verifier, challenge = pkce_pair()
            response = browser.get(
                server.base + "/authorize",
                params={
                    "response_type": "code",
                    "client_id": client.client_id,
                    "redirect_uri": REDIRECT_URI,
                    "scope": SCOPE,
                    "state": f"s{index}",
                    "nonce": f"n{index}",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                },
                allow_redirects=False,
                timeout=30,
            )
            location = response.headers["Location"]
            assert location.startswith(REDIRECT_URI), location
            code = re.search(r"[?&]code=([^&]+)", location).group(1)
            token = requests.post(
                server.base + "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                },
                auth=(client.client_id, client.client_secret),
                timeout=30,
            )
            assert token.status_code == 200, token.text
            families.append(token.json())
    return families


# Production's shape: instances of one gunicorn worker each (threads inside) behind a balancer
# that sends each new connection to the instance holding the fewest. Two instances of four
# threads: the same eight threads on the same two cores as the two workers measured before.
INSTANCES = 2
THREADS_PER_INSTANCE = 4


@contextlib.contextmanager
def running_server(args) -> Iterator[Server]:
    """INSTANCES gunicorn instances on one temporary database behind HAProxy (balance
    leastconn), with the bench users activated and token families issued through it."""
    work = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    balancer_port, instance_ports = free_port(), [free_port() for _ in range(INSTANCES)]
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        uri, database = stack.enter_context(bench_database(args.database, work))
        env = {
            **os.environ,
            **UNLIMITED,
            "IDP_CONFIG": "development",
            "IDP_INSTANCE_PATH": str(work / "instance"),
            "IDP_SQLALCHEMY_DATABASE_URI": uri,
            "IDP_OUTBOX_DIR": str(work / "outbox"),
            # The balancer's address, as the ingress's is in production; it adds the client's
            # address to X-Forwarded-For, one hop that the app trusts.
            "IDP_ISSUER": f"http://{HOST}:{balancer_port}",
            "IDP_TRUSTED_PROXIES": "1",
            "IDP_LOG_LEVEL": "WARNING",
            # Passkeys allowed: the PIN accounts log in as before, the passkey ones without SMS.
            "IDP_SECOND_FACTORS": "sms,passkey",
        }
        idp_command(env, "db", "upgrade")
        registered = {
            format_: json.loads(
                idp_command(
                    env,
                    "clients",
                    "create",
                    f"bench {format_}",
                    "--redirect-uri",
                    REDIRECT_URI,
                    "--access-token-format",
                    format_,
                    "--json",
                )
            )
            for format_ in ACCESS_TOKEN_FORMATS
        }
        masters = [
            stack.enter_context(gunicorn_instance(env, port, work / f"instance{index}"))
            for index, port in enumerate(instance_ports)
        ]
        balancer = stack.enter_context(
            haproxy.running_haproxy([(HOST, port) for port in instance_ports], port=balancer_port)
        )
        server = Server(
            balancer.base,
            env,
            work / "outbox",
            [f"bench{i}" for i in range(args.clients)],
            database,
            masters=masters,
        )
        for index, username in enumerate(server.usernames):
            activate(server, index, username)
        for format_, client in registered.items():
            server.clients[format_] = BenchClient(client["client_id"], client["client_secret"])
            server.clients[format_].tokens = token_families(
                server, server.clients[format_], args.clients
            )
        yield server


@contextlib.contextmanager
def gunicorn_instance(env: dict, port: int, work: Path) -> Iterator[subprocess.Popen]:
    """One instance: gunicorn with gunicorn.conf.py, one worker, on `port`; answering
    /healthz when this yields its master process."""
    work.mkdir()
    (work / "prometheus").mkdir()
    instance_env = {
        **env,
        "GUNICORN_BIND": f"{HOST}:{port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": str(THREADS_PER_INSTANCE),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
    }
    log_path = work / "gunicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
            cwd=ROOT,
            env=instance_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://{HOST}:{port}/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text()) from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)  # gunicorn's graceful_timeout is 25 s
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed_logins(server: Server, args, login) -> tuple[int, float, int]:
    """Logins by args.clients parallel clients, `login(index)` each, for at most args.seconds
    or args.logins: how many, in how many seconds, and how many SMS they sent."""
    stop = time.monotonic() + args.seconds
    done = [0] * args.clients
    sms_before = len(list(server.outbox.glob("*-sms-*.json")))

    def client(index: int) -> None:
        while time.monotonic() < stop and sum(done) < args.logins:
            login(index)
            done[index] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for future in [pool.submit(client, index) for index in range(args.clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    sent = len(list(server.outbox.glob("*-sms-*.json"))) - sms_before
    return sum(done), elapsed, sent


def login_rows(server: Server, args) -> list[Row]:
    logins, elapsed, sent = timed_logins(server, args, lambda index: full_login(server, index))
    for index in range(args.clients):  # made here: the other parts and the soak need none
        add_passkey_account(server, args.clients + index, f"benchpk{index}")
    passkey_users = list(server.passkeys)
    passkey_logins, passkey_elapsed, passkey_sent = timed_logins(
        server, args, lambda index: passkey_login(server, passkey_users[index])
    )
    # What a passkey login saves is the SMS a PIN login sends, measured in both series.
    saved = sent / logins - passkey_sent / passkey_logins
    return [
        Row(
            "full logins/s under gunicorn",
            f"{logins / elapsed:.1f} /s",
            f"{logins} logins (password + PIN, 4 requests each) by {args.clients} clients "
            f"in {elapsed:.1f} s, {sent / logins:.2f} SMS each",
        ),
        Row(
            "passkey logins/s under gunicorn",
            f"{passkey_logins / passkey_elapsed:.1f} /s",
            f"{passkey_logins} logins (password + passkey, 4 requests each) in "
            f"{passkey_elapsed:.1f} s, {passkey_sent / passkey_logins:.2f} SMS each",
        ),
        Row(
            "SMS saved per passkey login",
            f"{saved:.2f}",
            f"{saved * passkey_logins:.0f} SMS not sent in {passkey_logins} passkey logins",
        ),
    ]


# --- the protocol endpoints, ours against node oidc-provider ----------------------------------


def protocol_jobs(base: str, families: dict, userinfo: str, jwks: str) -> dict[str, list[load.Job]]:
    """The load per scenario. `families`: per access token format, a client with client_id,
    client_secret and tokens (one family per load client); the peer, which issues opaque
    tokens only, gives the same client for both, and so the same jobs: a refresh chain goes on
    where the last scenario left it."""
    jobs: dict[int, dict[str, list[load.Job]]] = {}
    for client in families.values():
        if id(client) in jobs:
            continue
        jobs[id(client)] = {
            "bearer": [
                load.Job(base, userinfo, "bearer", access_token=family["access_token"])
                for family in client.tokens
            ],
            "refresh": [
                load.Job(
                    base,
                    "/token",
                    "refresh",
                    refresh_token=family["refresh_token"],
                    client_id=client.client_id,
                    client_secret=client.client_secret,
                )
                for family in client.tokens
            ],
        }
    jwt, opaque = jobs[id(families["jwt"])], jobs[id(families["opaque"])]
    count = len(families["jwt"].tokens)
    # Userinfo before the refresh grants: the peer's in-memory storage is an LRU cache of 1000
    # entries, from which thousands of refreshed tokens would evict the first access tokens.
    return {
        "userinfo/s": jwt["bearer"],
        "userinfo/s, opaque": opaque["bearer"],
        "discovery/s": [load.Job(base, "/.well-known/openid-configuration")] * count,
        "JWKS/s": [load.Job(base, jwks)] * count,
        "refresh grants/s": jwt["refresh"],
        "refresh grants/s, opaque": opaque["refresh"],
    }


def protocol_rows(server: Server, args) -> list[Row]:
    ours = protocol_jobs(server.base, server.clients, "/userinfo", "/jwks.json")
    rows = []
    with contextlib.ExitStack() as stack:
        peers = {
            storage: stack.enter_context(peer.running_peer(free_port(), args.clients, storage))
            for storage in peer.STORAGES
        }
        sides = {"ours": ours} | {
            storage: protocol_jobs(
                node.base, dict.fromkeys(ACCESS_TOKEN_FORMATS, node), "/me", "/jwks"
            )
            for storage, node in peers.items()
        }
        version = peers["memory"].version
        for what in ours:
            # Alternating slices, so that whatever else the machine does hits all alike.
            done = {name: [0, 0.0] for name in sides}
            for _ in range(ROUNDS):
                for name, jobs in sides.items():
                    _, total = load.run(jobs[what], args.seconds / ROUNDS, args.requests // ROUNDS)
                    done[name][0] += total.requests - total.errors
                    done[name][1] += total.seconds
                    if total.errors:
                        print(
                            f"{what} ({name}): {total.errors} errors, first: {total.first_error}",
                            file=sys.stderr,
                        )
            rates = {name: count / seconds for name, (count, seconds) in done.items()}
            COMPARISON.append((what, rates))
            ratios = ", ".join(
                f"{storage}: {rates[storage]:.0f} /s, ours/peer {ratio(rates, storage):.2f}"
                for storage in peer.STORAGES
            )
            rows.append(
                Row(
                    f"{what} under gunicorn",
                    f"{rates['ours']:.0f} /s",
                    f"node oidc-provider {version} ({ratios})",
                )
            )
    return rows


def ratio(rates: dict[str, float], storage: str) -> float:
    return rates["ours"] / max(rates[storage], 1e-9)


# Slices per side and endpoint, alternating: a burst of other work on the machine then hits
# every side alike, and six slices even it out better than three.
ROUNDS = 6
# (what, {"ours" or a peer storage: per second}), printed as a table of its own at the end.
COMPARISON: list[tuple[str, dict[str, float]]] = []

# A scenario takes the running server and the arguments and returns rows. The protocol runs
# first: its access tokens live 5 minutes.
SERVER_SCENARIOS: list[Callable[[Server, argparse.Namespace], list[Row]]] = [
    protocol_rows,
    login_rows,
]
SCENARIO_PARTS = {protocol_rows: "protocol", login_rows: "logins"}


# --- profiles, in-process ---------------------------------------------------------------------


@contextlib.contextmanager
def profiled_app(database: str = "sqlite") -> Iterator:
    """The app in-process (Flask test client, the benchmark's configuration) on a temporary
    database, with the user `profiled` activated."""
    work = Path(tempfile.mkdtemp(prefix="idp-profile-"))
    os.environ.update({**UNLIMITED, "IDP_INSTANCE_PATH": str(work / "instance")})
    from flask_migrate import upgrade

    from idp import create_app
    from idp.platform.extensions import db

    stack = contextlib.ExitStack()
    uri, described = stack.enter_context(bench_database(database, work))
    app = create_app(
        "development",
        {
            "SQLALCHEMY_DATABASE_URI": uri,
            "OUTBOX_DIR": str(work / "outbox"),
            "LOG_LEVEL": "WARNING",
        },
    )
    app.config["BENCH_DATABASE"] = described
    with app.app_context():
        upgrade()

    def close_connections() -> None:  # before the database is dropped
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    stack.callback(close_connections)
    result = app.test_cli_runner().invoke(
        args=["users", "invite", "profiled", "--email", "p@example.com", "--phone", phone_of(0)]
    )
    assert result.exit_code == 0, result.output
    client = app.test_client()
    link = newest_link(work / "outbox", "p@example.com")
    path = "/" + link.split("/", 3)[3]
    page = client.get(path).text
    client.post(
        path, data={"csrf_token": csrf(page), "password": PASSWORD, "password_confirm": PASSWORD}
    )
    page = client.get("/pin").text
    client.post(
        "/pin", data={"csrf_token": csrf(page), "pin": newest_pin(work / "outbox", phone_of(0))}
    )
    try:
        yield app, work / "outbox"
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


def profile_rows(_args) -> list[Row]:
    """Profiles POST /login in-process."""
    with profiled_app() as (app, _):
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
    return summarize_profile(
        profiler,
        rounds,
        LOGIN_BUCKETS,
        "login POST, in-process",
        "cProfile over {rounds} POSTs /login (password check, PIN, SMS)",
    )


def token_profile_rows(args) -> list[Row]:
    """Profiles POST /token with the refresh grant in-process: one family, rotated each time."""
    with profiled_app(args.database) as (app, outbox):
        database = app.config["BENCH_DATABASE"]
        created = app.test_cli_runner().invoke(
            args=["clients", "create", "profiled", "--redirect-uri", REDIRECT_URI, "--json"]
        )
        assert created.exit_code == 0, created.output
        rp = json.loads(created.output)
        browser = app.test_client()
        token = csrf(browser.get("/login").text)
        browser.post(
            "/login", data={"csrf_token": token, "username": "profiled", "password": PASSWORD}
        )
        token = csrf(browser.get("/pin").text)
        browser.post("/pin", data={"csrf_token": token, "pin": newest_pin(outbox, phone_of(0))})
        verifier, challenge = pkce_pair()
        response = browser.get(
            "/authorize",
            query_string={
                "response_type": "code",
                "client_id": rp["client_id"],
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        code = re.search(r"[?&]code=([^&]+)", response.headers["Location"]).group(1)
        auth = (rp["client_id"], rp["client_secret"])
        api = app.test_client()
        response = api.post(
            "/token",
            auth=auth,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        refresh = response.json["refresh_token"]
        for _ in range(20):  # warm: keys loaded, caches filled, as in a running worker
            refresh = api.post(
                "/token", auth=auth, data={"grant_type": "refresh_token", "refresh_token": refresh}
            ).json["refresh_token"]
        profiler = cProfile.Profile()
        rounds = min(args.requests, 300)
        for _ in range(rounds):
            profiler.enable()
            response = api.post(
                "/token", auth=auth, data={"grant_type": "refresh_token", "refresh_token": refresh}
            )
            profiler.disable()
            assert response.status_code == 200, response.text
            refresh = response.json["refresh_token"]
    return summarize_profile(
        profiler,
        rounds,
        TOKEN_BUCKETS,
        "refresh grant POST /token, in-process",
        f"cProfile over {{rounds}} refresh grants, {database}",
    )


LOGIN_BUCKETS = {
    "argon2 verify": ("argon2", "_ffi"),
    "SQLAlchemy + sqlite": ("sqlalchemy", "sqlite3"),
    "SMS to the outbox file": ("senders",),
    "templates + forms": ("jinja2", "flask_wtf", "wtforms"),
}
TOKEN_BUCKETS = {
    "argon2 (must be none)": ("argon2",),
    "SQLAlchemy + driver, round trips": ("sqlalchemy", "sqlite3", "psycopg"),
    "signing (joserfc, cryptography)": ("joserfc", "cryptography"),
    "Authlib": ("authlib",),
    "Flask + Werkzeug": ("flask/", "werkzeug", "flask_"),
    "our code (idp/)": ("/idp/",),
}


def summarize_profile(
    profiler: cProfile.Profile, rounds: int, buckets: dict, title: str, note: str
) -> list[Row]:
    """Own time per function, summed into buckets by file or function name."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    spent = dict.fromkeys(buckets, 0.0)
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        for bucket, markers in buckets.items():
            if any(marker in filename or marker in name for marker in markers):
                spent[bucket] += own
                break
    rows = [Row(title, f"{total / rounds * 1000:.2f} ms", note.format(rounds=rounds))]
    for bucket, seconds in spent.items():
        rows.append(
            Row(
                f"  of which {bucket}",
                f"{seconds / rounds * 1000:.2f} ms",
                f"{seconds / total:.0%}",
            )
        )
    other = total - sum(spent.values())
    rows.append(
        Row(
            "  of which everything else",
            f"{other / rounds * 1000:.2f} ms",
            f"{other / total:.0%} (standard library, other packages)",
        )
    )
    if os.environ.get("BENCH_PROFILE_TOP"):
        listing = io.StringIO()
        pstats.Stats(profiler, stream=listing).sort_stats("tottime").print_stats(
            int(os.environ["BENCH_PROFILE_TOP"])
        )
        print(listing.getvalue(), file=sys.stderr)
    return rows


# --- main --------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    width = max(len(row.what) for row in rows)
    figure = max(len(row.figure) for row in rows)
    for row in rows:
        print(f"{row.what:<{width}}  {row.figure:>{figure}}  {row.note}")


PARTS = ("argon2", "logins", "protocol", "profiles")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """What running_server reads: the load clients (and users) and the database."""
    parser.add_argument("--clients", type=int, default=8, help="parallel clients (and users)")
    parser.add_argument(
        "--database",
        choices=("auto", "sqlite", "postgresql"),
        default="auto",
        help="auto: PostgreSQL on 127.0.0.1:5432 when it answers, else SQLite",
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=300, help="at most this many logins")
    parser.add_argument(
        "--requests",
        type=int,
        default=50000,
        help="at most this many requests per protocol scenario and server",
    )
    parser.add_argument("--seconds", type=float, default=20, help="at most this long per scenario")
    add_server_arguments(parser)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"unknown part in --parts: {', '.join(parts - set(PARTS))}")

    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, Python {sys.version.split()[0]}", flush=True)
    rows = argon2_rows(args) if "argon2" in parts else []
    scenarios = [
        scenario
        for scenario in SERVER_SCENARIOS
        if SCENARIO_PARTS.get(scenario, "protocol") in parts
    ]
    if scenarios:
        with running_server(args) as server:
            print(
                f"{INSTANCES} gunicorn instances x 1 worker x {THREADS_PER_INSTANCE} threads "
                f"behind HAProxy (leastconn) on {server.base}, {server.database}",
                flush=True,
            )
            for scenario in scenarios:
                rows.extend(scenario(server, args))
    if "profiles" in parts:
        rows.extend(token_profile_rows(args))
        rows.extend(profile_rows(args))
    print_table(rows)
    if COMPARISON:
        print()
        header = "".join(f"{'peer ' + storage:>14}{'ours/peer':>11}" for storage in peer.STORAGES)
        width = max(len(what) for what, _ in COMPARISON)
        print(f"{'per second':<{width}}{'ours':>8}{header}")
        for what, rates in COMPARISON:
            figures = "".join(
                f"{rates[storage]:>14.0f}{ratio(rates, storage):>11.2f}"
                for storage in peer.STORAGES
            )
            print(f"{what:<{width}}{rates['ours']:>8.0f}{figures}")


if __name__ == "__main__":
    main()
