"""Liveness and readiness: /readyz names the check that fails and never its error text."""

import socket

from idp.platform.health import register_readiness_check


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ready_with_a_reachable_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ready",
        "checks": {"database": "ok", "signing_key": "ok"},
    }


def test_readyz_fails_when_the_database_is_unreachable(make_app, database_uri):
    make_app()  # the fixture's first app owns the shared test database
    unreachable = f"postgresql+psycopg://idp:s3cret-pw@127.0.0.1:{unused_port()}/idp"
    app = make_app(SQLALCHEMY_DATABASE_URI=unreachable)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    # Without a database there is no signing key either.
    assert response.json["failing"] == ["database", "signing_key"]
    assert response.json["checks"] == {"database": "failed", "signing_key": "failed"}
    assert "s3cret-pw" not in response.text and "127.0.0.1" not in response.text


def test_readyz_with_redis_down_says_it_cannot_sign_in_users_and_stays_ready(make_app):
    """Every instance shares Redis: taking them all out of the Service for it would stop
    tokens, userinfo and discovery too, which work without it. So the chart's probe sees 200,
    and an operator's monitoring sees "degraded" and what the instance cannot do."""
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "degraded",
        "failing": ["redis"],
        "cannot": ["sign in users"],
        "checks": {"database": "ok", "signing_key": "ok", "redis": "failed"},
    }


def test_readyz_without_the_database_is_unavailable_even_if_only_redis_is_degraded(
    make_app, database_uri
):
    make_app()  # the fixture's first app owns the shared test database
    app = make_app(
        SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg://idp@127.0.0.1:{unused_port()}/idp",
        REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0",
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["failing"] == ["database", "redis", "signing_key"]


def test_other_parts_of_the_app_add_readiness_checks(app, client):
    def signing_key():
        raise LookupError("no usable signing key")

    register_readiness_check(app, "signing_key", signing_key)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failing"] == ["signing_key"]
    assert "no usable signing key" not in response.text


def test_readyz_logs_why_the_signing_key_cannot_sign(make_app, caplog):
    """Another secret (changed, or different on one of two pods) cannot decrypt the stored
    keys: this instance leaves the traffic, and its log line says why and what to do."""
    assert make_app().test_client().get("/readyz").status_code == 200
    other = make_app(SECRET_KEY="another secret")
    response = other.test_client().get("/readyz")
    assert response.status_code == 503 and response.json["failing"] == ["signing_key"]
    assert (
        "readiness check signing_key failed: this instance cannot sign: the signing keys cannot "
        "be decrypted with this IDP_SECRET_KEY: was it changed? Set the old one back, or "
        "`idp keys rotate` (every instance needs the same secret)"
    ) in caplog.text
    assert "another secret" not in caplog.text + response.text
