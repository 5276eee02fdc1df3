"""What checking a pooled PostgreSQL connection costs on the hot path, the token read of every
refresh grant and userinfo request (one checkout, one SELECT, in an app context as a request
has): SQLAlchemy's pool_pre_ping (a round trip on every checkout), our idle check
(idp.platform.database.install_idle_ping: a round trip only after a second idle), and no check.

    BENCH_DATABASE_URI=postgresql+psycopg://postgres@127.0.0.1:5432/idp_bench \\
        .venv/bin/python -m bench.pool_check

The database must be migrated (`idp db upgrade`). Prints µs per read, the median of 5 runs
taken in turns."""

import os
import statistics
import time

from idp import create_app
from idp.oidc import token_store
from idp.platform.database import dispose_autocommit_pool
from idp.platform.extensions import db

READS = 2000
RUNS = 5

CHECKS = {
    "pool_pre_ping": {
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "DATABASE_PING_AFTER_IDLE_SECONDS": 3600,
    },
    "idle check (1 s)": {"DATABASE_PING_AFTER_IDLE_SECONDS": 1.0},
    "no check": {"DATABASE_PING_AFTER_IDLE_SECONDS": 3600},
}


def build(settings: dict):
    return create_app(
        "testing", {"SQLALCHEMY_DATABASE_URI": os.environ["BENCH_DATABASE_URI"], **settings}
    )


def microseconds_per_read(app) -> float:
    started = time.perf_counter()
    for _ in range(READS):
        with app.app_context():
            token_store.find_token("x" * 43, "refresh")
    return (time.perf_counter() - started) / READS * 1e6


def main() -> None:
    apps = {name: build(settings) for name, settings in CHECKS.items()}
    runs = {name: [] for name in apps}
    for run in range(RUNS + 1):  # the first warms the pools and the compiled statement
        # In turns, so that the machine's other load falls on each alike.
        for name, app in apps.items():
            value = microseconds_per_read(app)
            if run:
                runs[name].append(value)
    for app in apps.values():
        with app.app_context():
            db.engine.dispose()
        dispose_autocommit_pool(app)
    base = statistics.median(runs["no check"])
    for name, values in runs.items():
        value = statistics.median(values)
        print(f"{name:18} {value:7.1f} µs per read  ({value - base:+6.1f} µs)")


if __name__ == "__main__":
    main()
