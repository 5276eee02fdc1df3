"""Liveness (/healthz: the process answers) and readiness (/readyz: it can serve a login).

Readiness runs named checks (database, redis when configured, and those that other parts of
the app add with `register_readiness_check`: signing_key by idp.oidc.keys); each returns
nothing or raises. A failing check is named in the answer but its error text never is: it may
carry a host, a user or a URL.
"""

from collections.abc import Callable

from flask import Blueprint, Flask, current_app
from sqlalchemy import text

from idp.platform import drain
from idp.platform.extensions import db

bp = Blueprint("health", __name__)

ReadinessCheck = Callable[[], None]


class NotReady(Exception):
    """A failure that a check explains in words of its own, with nothing of the configuration
    in them: logged as it is (other errors by their type only)."""


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    if drain.draining():
        # Out of the balancer first, then stopped: see idp.platform.drain.
        return {"status": "draining"}, 503
    results = {}
    for name, check in readiness_checks(current_app).items():
        try:
            check()
        except NotReady as error:
            current_app.logger.warning("readiness check %s failed: %s", name, error)
            results[name] = "failed"
        except Exception as error:  # any failure means "not ready"; which one is logged
            current_app.logger.warning("readiness check %s failed: %s", name, type(error).__name__)
            results[name] = "failed"
        else:
            results[name] = "ok"
    failing = [name for name, result in results.items() if result != "ok"]
    if failing:
        return {"status": "unavailable", "failing": failing, "checks": results}, 503
    return {"status": "ready", "checks": results}


def register_readiness_check(app: Flask, name: str, check: ReadinessCheck) -> None:
    """Adds a check that must pass before the instance takes traffic."""
    app.extensions.setdefault("idp.readiness", {})[name] = check


def readiness_checks(app: Flask) -> dict[str, ReadinessCheck]:
    return app.extensions.get("idp.readiness", {})


def init_readiness(app: Flask) -> None:
    register_readiness_check(app, "database", check_database)
    if app.config["REDIS_URL"]:
        register_readiness_check(app, "redis", check_redis)


def check_database() -> None:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_redis() -> None:
    import redis

    client = redis.Redis.from_url(
        current_app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=2
    )
    try:
        client.ping()
    finally:
        client.close()
