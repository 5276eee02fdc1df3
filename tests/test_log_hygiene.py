"""No secret reaches a log: every line logged during the whole journey is searched for the
password, the PINs, the activation link's token, the cookies and the SECRET_KEY."""

import json
import logging
import urllib.request
from datetime import timedelta
from types import SimpleNamespace

import pytest
import requests

from idp.accounts import invitations, provisioning
from idp.platform.logging_setup import GunicornLogger, JsonFormatter, loggable_path
from tests.conftest import PASSWORD, invite, path_of, post_form
from tests.scim_fixtures import new_user
from tests.test_metrics import fetch, gunicorn


class Collector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def collected_logs():
    root = logging.getLogger()
    collector = Collector()
    level = root.level
    root.addHandler(collector)
    yield collector, root
    root.removeHandler(collector)
    root.setLevel(level)


def test_the_whole_journey_logs_no_secret(make_app, outbox, collected_logs):
    collector, root = collected_logs
    app = make_app()
    root.setLevel(logging.DEBUG)  # after the app set its level: every record, all levels
    client = app.test_client()
    secrets = {
        "SECRET_KEY": app.config["SECRET_KEY"],
        "AUDIT_KEY": app.config["AUDIT_KEY"],
        "password": PASSWORD,
    }

    invite(app)
    link = path_of(outbox.last_link())
    secrets["activation token"] = link.rsplit("/", 1)[1]
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD + "x"})
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    secrets["activation PIN"] = outbox.last_pin()
    wrong_pin = "000000" if outbox.last_pin() != "000000" else "111111"
    post_form(client, "/pin", {"pin": wrong_pin})
    assert post_form(client, "/pin", {"pin": outbox.last_pin()}).status_code == 200

    assert post_form(client, "/login", {"username": "anna", "password": "wrong" + PASSWORD})
    response = post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 303
    secrets["flow cookie"] = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    secrets["login PIN"] = outbox.last_pin()
    response = post_form(client, "/pin", {"pin": outbox.last_pin()})
    assert response.status_code == 303
    secrets["session cookie"] = client.get_cookie(app.config["AUTH_COOKIE_NAME"]).value
    assert client.get("/").status_code == 200
    assert post_form(client, "/logout", {}).status_code == 303
    # A link used up and a request the CSRF check rejects take the paths that log problems.
    client.get(link)
    client.post("/login", data={"username": "anna", "password": PASSWORD})

    assert len(set(secrets.values())) == len(secrets), "the secrets to look for are distinct"
    everything = "\n".join(collector.lines)
    assert collector.lines, "the rejected POST logged nothing: is the collector attached?"
    for name, value in secrets.items():
        assert value not in everything, f"the {name} appears in the logs"
    for line in collector.lines:
        json.loads(line)


def test_request_id_is_echoed_when_safe_and_generated_otherwise(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    for unsafe in ("a" * 65, "evil\\nline", "<script>", "has space"):
        echoed = client.get("/healthz", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert echoed != unsafe and len(echoed) == 32
    first = client.get("/healthz").headers["X-Request-ID"]
    assert first != client.get("/healthz").headers["X-Request-ID"]


def test_log_lines_are_json_with_the_request_id(app, client, collected_logs):
    collector, _ = collected_logs

    @app.get("/_test/log")
    def log_something():
        app.logger.warning("something happened to %s", "someone")
        return "ok"

    client.get("/_test/log", headers={"X-Request-ID": "req-42"})
    entry = json.loads(collector.lines[-1])
    assert entry["message"] == "something happened to someone"
    assert entry["level"] == "warning"
    assert entry["request_id"] == "req-42"


def test_paths_lose_query_strings_and_random_segments():
    token = "WyIxIiwiYWJjIl0.Zx1y2A.k3Jd9sLq0PzXbV8wYtRmNcE4uIo"
    assert loggable_path(f"/activate/{token}") == "/activate/[redacted]"
    assert loggable_path("/authorize?code=secret&state=s") == "/authorize"
    assert loggable_path("/.well-known/openid-configuration") == (
        "/.well-known/openid-configuration"
    )


def test_gunicorn_access_line_has_neither_query_string_nor_token(capsys):
    logger = GunicornLogger(gunicorn_config())
    token = "WyIxIiwiYWJjIl0.Zx1y2A.k3Jd9sLq0PzXbV8wYtRmNcE4uIo"
    request = SimpleNamespace(method="GET", path=f"/activate/{token}", query="code=c0de")
    response = SimpleNamespace(status="200 OK", headers=[("X-Request-ID", "req-7")], sent=123)
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "QUERY_STRING": "code=c0de",
        "RAW_URI": f"/activate/{token}?code=c0de",
        "HTTP_REFERER": "https://rp.example/cb?code=c0de",
    }
    logger.access(response, request, environ, timedelta(milliseconds=12))
    captured = capsys.readouterr()
    line = (captured.out + captured.err).strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["access"]["path"] == "/activate/[redacted]"
    assert entry["access"]["status"] == 200
    assert entry["request_id"] == "req-7"
    assert token not in line and "c0de" not in line


def gunicorn_config():
    """gunicorn's own configuration, as gunicorn.conf.py sets it, logging to stderr."""
    from gunicorn.config import Config

    config = Config()
    config.set("accesslog", "-")
    config.set("errorlog", "-")
    return config


def test_under_gunicorn_every_line_is_json_and_no_query_string_is_logged(tmp_path, database_uri):
    token = "WyIxIiwiYWJjIl0.Zx1y2A.k3Jd9sLq0PzXbV8wYtRmNcE4uIo"
    with gunicorn(tmp_path, database_uri) as (base, lines):
        assert fetch(f"{base}/healthz?code=c0de-in-query")[0] == 200
        assert fetch(f"{base}/activate/{token}?state=st4te")[0] == 400
        request = urllib.request.Request(base + "/healthz", headers={"X-Request-ID": "trace-1"})
        urllib.request.urlopen(request, timeout=10).close()
    entries = [json.loads(line) for line in lines]
    access = [entry for entry in entries if "access" in entry]
    assert {entry["access"]["path"] for entry in access} >= {
        "/healthz",
        "/activate/[redacted]",
    }
    assert any(entry.get("request_id") == "trace-1" for entry in access)
    everything = "\n".join(lines)
    assert "c0de-in-query" not in everything and "st4te" not in everything
    assert token not in everything


def test_the_oidc_flow_logs_no_code_token_or_hint(idp, browser, rp, collected_logs):
    collector, root = collected_logs
    root.setLevel(logging.DEBUG)
    response = browser.visit(rp.authorization_url(login_hint="anna-hint-7f3k"))
    callback = response.headers["Location"]
    secrets = {"code": rp.callback_params(response)["code"], "state": rp.last["state"]}
    token = rp.redeem(callback)
    secrets.update({name: token[name] for name in ("access_token", "refresh_token", "id_token")})
    refreshed = requests_post(
        idp.url("/token"),
        {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        (rp.client_id, rp.client_secret),
    )
    secrets["rotated refresh token"] = refreshed["refresh_token"]
    # Replaying the old refresh token and the old code takes the paths that log a warning.
    requests_post(
        idp.url("/token"),
        {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        (rp.client_id, rp.client_secret),
    )
    requests_post(
        idp.url("/token"),
        {
            "grant_type": "authorization_code",
            "code": secrets["code"],
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.last["verifier"],
        },
        (rp.client_id, rp.client_secret),
    )
    browser.http.get(
        idp.url("/end_session"),
        params={"id_token_hint": token["id_token"], "state": "logout-state-9q2w"},
        allow_redirects=False,
        timeout=10,
    )
    secrets["logout state"] = "logout-state-9q2w"
    secrets["login_hint"] = "anna-hint-7f3k"

    # The test server's request lines (werkzeug) and the test's HTTP client (urllib3) are not
    # ours: production runs gunicorn, whose access lines are checked below.
    lines = [
        line
        for line in collector.lines
        if json.loads(line)["logger"].split(".")[0] not in ("werkzeug", "urllib3")
    ]
    assert lines, "nothing was logged: is the collector attached?"
    everything = "\n".join(lines)
    for name, value in secrets.items():
        assert value not in everything, f"the {name} appears in the logs"


def requests_post(url: str, data: dict, auth: tuple) -> dict:
    return requests.post(url, data=data, auth=auth, timeout=10).json()


def test_under_gunicorn_authorize_and_end_session_queries_are_not_logged(tmp_path, database_uri):
    hint = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJoaW50In0.c2lnbmF0dXJlLW9mLXRoZS1oaW50"
    with gunicorn(tmp_path, database_uri) as (base, lines):
        fetch(f"{base}/authorize?client_id=c&state=st4te-a&login_hint=h1nt-user&code=c0de-a")
        fetch(f"{base}/end_session?id_token_hint={hint}&state=st4te-b")
    everything = "\n".join(lines)
    entries = [json.loads(line) for line in lines]
    paths = {entry["access"]["path"] for entry in entries if "access" in entry}
    assert {"/authorize", "/end_session"} <= paths
    for value in ("st4te-a", "h1nt-user", "c0de-a", hint, "st4te-b", "c2lnbmF0dXJl"):
        assert value not in everything


# --- Unexpected errors log the redacted path ----------------------------------------------------


def test_unexpected_error_on_activation_link_logs_no_token(
    app, client, outbox, monkeypatch, caplog
):
    invite(app)
    link = path_of(outbox.last_link())
    token = link.rsplit("/", 1)[1]

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(invitations, "resolve", broken)
    caplog.set_level(logging.ERROR)
    assert client.get(link).status_code == 500
    lines = [record for record in caplog.records if "unhandled error" in record.getMessage()]
    assert lines, "the unexpected error was not logged"
    assert "/activate/[redacted]" in lines[0].getMessage()
    assert token not in caplog.text


def test_unexpected_scim_error_logs_the_redacted_path(idp, ordering, monkeypatch, caplog):
    created = ordering.scim.create(new_user(ordering))

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(provisioning, "replace", broken)
    caplog.set_level(logging.ERROR)
    response = ordering.http.put(
        f"/Users/{created.id}",
        json=ordering.user_payload(),
        headers={"Content-Type": "application/scim+json"},
    )
    assert response.status_code == 500
    lines = [record for record in caplog.records if "unhandled error" in record.getMessage()]
    assert lines, "the unexpected error was not logged"
    assert "/scim/v2/Users/[redacted]" in lines[0].getMessage()
    assert created.id not in caplog.text
