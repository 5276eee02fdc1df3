"""Runs the operator's quick start from README.md as written, the way a new operator would: a
fresh venv outside the checkout, `pip install .`, the exports, every `idp` command, and gunicorn
answering /healthz and discovery, against a fresh PostgreSQL database of its own.

Only the secrets and the hosts of the exports are put in (this machine's PostgreSQL, Redis and
a throwaway SMTP server); everything else, the commands included, is the README's text. Run by
`./dev test`:  python -m tests.quickstart
"""

import argparse
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psycopg

from idp.demo.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# Redis database of its own (tests/test_rate_limits.py flushes 15).
REDIS_URL = "redis://127.0.0.1:6379/14"


def quick_start_commands(readme: str) -> list[str]:
    """The shell block under "Operator's quick start", one entry per command (continuation
    lines joined)."""
    section = readme.split("## Operator's quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    return [command.strip() for command in block.replace("\\\n", " ").splitlines() if command]


def exported(command: str, test_bed: dict[str, str]) -> dict[str, str]:
    """The variables an `export` line sets, with the test bed's secrets and hosts put in. A
    placeholder left without a value of the test bed fails: the README and this run drifted."""
    values = {}
    for assignment in shlex.split(command, comments=True)[1:]:
        name, _, value = assignment.partition("=")
        values[name] = test_bed.pop(name, value)
        if values[name] == "...":
            raise SystemExit(f"quick start: no test value for the placeholder {name}=...")
    return values


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"quick start: nothing listens on {port}:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)


@contextmanager
def fresh_database():
    name = f"idp_quickstart_{os.getpid()}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def background(command: list[str] | str, log: Path, **options):
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            shell=isinstance(command, str),
            **options,
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def fetch(url: str, **headers) -> str:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def serve_and_check(command: str, env: dict, work: Path) -> None:
    """gunicorn as the README starts it: answers /healthz and discovery, then stops."""
    port = int(env["GUNICORN_BIND"].rsplit(":", 1)[1])
    log = work / "gunicorn.log"
    with background(f"exec {command}", log, cwd=work, env=env, executable="/bin/bash") as server:
        wait_for_port(port, server, log)
        base = f"http://{HOST}:{port}"
        assert fetch(base + "/healthz"), log.read_text()
        discovery = fetch(base + "/.well-known/openid-configuration")
        assert f'"issuer":"{env["IDP_ISSUER"]}"' in discovery.replace(" ", ""), discovery
        # Templates and compiled translations came with the install.
        assert "Benutzername" in fetch(base + "/login", **{"Accept-Language": "de"})
    print(f"  ok  {command.split('  #')[0]}  (/healthz, discovery, /login answered; stopped)")


def run_quick_start(python: str) -> None:
    with tempfile.TemporaryDirectory(prefix="idp-quickstart-") as work:
        run_in(Path(work), python)


def run_in(work: Path, python: str) -> None:
    commands = quick_start_commands((ROOT / "README.md").read_text())
    smtp_port = free_port()
    smtp_log = work / "smtp.log"
    with (
        fresh_database() as database,
        background(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{smtp_port}"],
            smtp_log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as smtp,
    ):
        wait_for_port(smtp_port, smtp, smtp_log)
        subprocess.run([python, "-m", "venv", str(work / "venv")], check=True)
        # Nothing of the checkout on the path: what runs is what the install put in the venv.
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("IDP_", "GUNICORN_"))
            and name not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{work / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
        # Byte-compiling every dependency at install time costs more than the run saves.
        env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_COMPILE": "1"}
        test_bed = {
            "IDP_SECRET_KEY": secrets.token_urlsafe(32),
            "IDP_AUDIT_KEY": secrets.token_urlsafe(32),
            "IDP_SQLALCHEMY_DATABASE_URI": database,
            "IDP_MAIL_SERVER": HOST,
            "IDP_VONAGE_API_KEY": "quickstart-key",
            "IDP_VONAGE_API_SECRET": "quickstart-secret",
            "IDP_REDIS_URL": REDIS_URL,
            # The throwaway SMTP server's port; it speaks no TLS.
            "IDP_MAIL_PORT": str(smtp_port),
            "IDP_MAIL_USE_TLS": "false",
        }
        # What the README leaves to the place it runs in: where gunicorn listens.
        env["GUNICORN_BIND"] = f"{HOST}:{free_port()}"
        for command in commands:
            if command.startswith("export "):
                values = exported(command, test_bed)
                env |= values
                print(f"  ok  export {' '.join(values)}")
            elif command.startswith("gunicorn "):
                serve_and_check(command, env, work)
            else:
                # `pip install .` installs the checkout; every other command runs elsewhere.
                cwd = ROOT if command.startswith("pip install .") else work
                started = time.monotonic()
                done = subprocess.run(  # noqa: S602 (the README's shell line, as an operator types it)
                    command,
                    shell=True,
                    executable="/bin/bash",
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise SystemExit(f"quick start failed: {command}\n{done.stdout}{done.stderr}")
                print(f"  ok  {command.split('  #')[0]}  ({time.monotonic() - started:.1f} s)")
        if test_bed:
            raise SystemExit(f"quick start: the README no longer exports {sorted(test_bed)}")
        assert "Ihr Zugang zu e:service" in smtp_log.read_text(), "no activation mail arrived"
    print(f"quick start ok: {len(commands)} commands from README.md, outside the checkout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3", help="the Python that makes the venv")
    run_quick_start(parser.parse_args().python)


if __name__ == "__main__":
    main()
