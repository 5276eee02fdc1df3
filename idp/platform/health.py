"""Liveness (/healthz: the process answers) and readiness (/readyz: it can serve).

Readiness runs named checks (database, redis when configured, and those that other parts of
the app add with `register_readiness_check`: signing_key by idp.oidc.keys); each returns
nothing or raises. A failing check is named in the answer but its error text never is: it may
carry a host, a user or a URL.

Two kinds of failure. A check that the instance cannot serve at all without (the database, the
signing key) makes /readyz 503 "unavailable": the balancer takes the instance out. A check
registered with `cannot=` (Redis: "sign in users") only limits what it can do: /readyz stays
200 with "degraded" and says what it cannot do, because every instance shares that service
and would fail alike; taking them all out of the Service would stop discovery, JWKS, refresh
grants and userinfo too, which work without it.
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
    limits = readiness_limits(current_app)
    if any(name not in limits for name in failing):
        return {"status": "unavailable", "failing": failing, "checks": results}, 503
    if failing:
        cannot = sorted({limits[name] for name in failing})
        return {"status": "degraded", "failing": failing, "cannot": cannot, "checks": results}
    return {"status": "ready", "checks": results}


def register_readiness_check(
    app: Flask, name: str, check: ReadinessCheck, *, cannot: str | None = None
) -> None:
    """Adds a check that must pass before the instance takes traffic; with `cannot` (what the
    instance cannot do while it fails), one that only degrades it and keeps it ready."""
    app.extensions.setdefault("idp.readiness", {})[name] = check
    limits = app.extensions.setdefault("idp.readiness_limits", {})
    if cannot is None:
        limits.pop(name, None)
    else:
        limits[name] = cannot


def readiness_limits(app: Flask) -> dict[str, str]:
    return app.extensions.get("idp.readiness_limits", {})


def readiness_checks(app: Flask) -> dict[str, ReadinessCheck]:
    return app.extensions.get("idp.readiness", {})


def init_readiness(app: Flask) -> None:
    register_readiness_check(app, "database", check_database)
    if app.config["REDIS_URL"]:
        # The password attempts and SMS caps are counted there: without it no password is
        # checked and no PIN sent (idp.platform.outages), all else works.
        register_readiness_check(app, "redis", check_redis, cannot="sign in users")


def check_database() -> None:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_redis() -> None:
    import redis

    from idp.platform.ratelimit import redis_timeouts

    client = redis.Redis.from_url(
        current_app.config["REDIS_URL"], **redis_timeouts(current_app.config)
    )
    try:
        client.ping()
    finally:
        client.close()
