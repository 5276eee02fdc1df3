"""Two instances as one identity provider (tests/cluster.py): a login, refresh rotation, single
sign-on and logout spread over both, an instance killed in the middle of a login, and a
rolling restart under load that loses no request. PostgreSQL only: instances share a database
server, which SQLite is not."""

import collections
import html
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from sqlalchemy import text

from idp import create_app
from idp.oidc import keys
from idp.platform.extensions import db
from tests.cluster import running_cluster
from tests.conftest import PASSWORD, POSTGRES_URI, Outbox, activate, empty_tables
from tests.oidc_fixtures import BackchannelReceiver, Browser, LiveIdp, RelyingParty
from tests.servers import HOST, free_port

pytestmark = pytest.mark.skipif(
    not POSTGRES_URI, reason="several instances share PostgreSQL (IDP_TEST_DATABASE_URI)"
)

# The rolling restart's load: relying parties each refreshing, asking userinfo and discovery,
# then pausing. Steady load rather than the most the machine can take, whose starved CPU would
# slow the instances' stops and starts to a minute.
LOAD_CLIENTS = 4
LOAD_PAUSE_SECONDS = 0.1


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> tuple[Path, int]:
    """The cluster's folder and HAProxy's port, known before anything starts."""
    return tmp_path_factory.mktemp("cluster"), free_port()


@pytest.fixture(scope="module")
def operator_app(database_uri, place):
    """An app of the operator's own on the cluster's database, for its commands; the tables
    emptied before the instances start (they create their signing key at start) and after."""
    work, port = place
    app = create_app(
        "testing",
        {
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "ISSUER": f"http://{HOST}:{port}",
            "OUTBOX_DIR": str(work / "outbox"),
        },
    )
    with app.app_context():
        empty_tables()
        db.session.remove()
    yield app
    with app.app_context():
        db.session.remove()
        empty_tables()
        db.engine.dispose()


@pytest.fixture(scope="module")
def cluster(operator_app, database_uri, place):
    """Started once for the module; a test that stops an instance leaves it to `restored`."""
    work, port = place
    with running_cluster(database_uri, work, port=port) as running:
        yield running


@pytest.fixture(scope="module")
def idp(cluster, operator_app):
    """The cluster seen from its issuer; anna activated."""
    activate(operator_app, operator_app.test_client(), Outbox(cluster.outbox))
    return LiveIdp(operator_app, cluster.issuer)


@pytest.fixture(autouse=True)
def restored(cluster):
    yield
    cluster.restore()


@pytest.fixture
def browser(idp, cluster):
    return Browser(idp, Outbox(cluster.outbox))


def relying_party(idp: LiveIdp, *extra: str, name: str = "Portal") -> RelyingParty:
    redirect_uri = f"http://{HOST}:{free_port()}/callback"
    created = idp.create_client(*extra, redirect_uri=redirect_uri, name=name)
    return RelyingParty(idp, created["client_id"], created["client_secret"], redirect_uri)


def begin_login(browser: Browser, rp: RelyingParty, headers: dict) -> None:
    """From the relying party's authorization request up to the accepted password."""
    page = browser.http.get(rp.authorization_url(), headers=headers, timeout=10)
    assert urlsplit(page.url).path == "/login", page.text[:300]
    form = {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1),
        "username": "anna",
        "password": PASSWORD,
        "next": html.unescape(re.search(r'name="next" value="([^"]+)"', page.text).group(1)),
    }
    response = browser.http.post(
        browser.idp.url("/login"), data=form, headers=headers, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303, response.text[:300]


def finish_login(browser: Browser, rp: RelyingParty, headers: dict) -> dict:
    """The PIN, back to the relying party, and its token response."""
    page = browser.http.get(browser.idp.url("/pin"), headers=headers, timeout=10)
    form = {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1),
        "pin": browser.outbox.last_pin(),
    }
    response = browser.http.post(
        browser.idp.url("/pin"), data=form, headers=headers, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303, response.text[:300]
    browser.http.headers.update(headers)
    landed = browser.visit(urljoin(response.url, response.headers["Location"]))
    return rp.redeem(landed.headers["Location"])


def served(instance, method: str, path: str) -> int:
    """How many `method path` requests the instance's access log shows."""
    count = 0
    for line in instance.log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        access = json.loads(line).get("access") or {}
        if access.get("method") == method and access.get("path") == path:
            count += 1
    return count


def refresh(rp: RelyingParty, token: str, headers: dict | None = None, session=requests):
    return session.post(
        rp.idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(rp.client_id, rp.client_secret),
        headers=headers or {},
        timeout=30,
    )


def userinfo_status(idp: LiveIdp, access_token: str, headers: dict) -> int:
    return requests.get(
        idp.url("/userinfo"),
        headers={"Authorization": f"Bearer {access_token}", **headers},
        timeout=10,
    ).status_code


def test_a_password_on_one_instance_and_the_pin_on_the_other_sign_in(idp, cluster, browser):
    first, second = cluster.instances
    rp = relying_party(idp)
    before = served(first, "POST", "/login"), served(second, "POST", "/pin")

    begin_login(browser, rp, cluster.pinned(first))
    token = finish_login(browser, rp, cluster.pinned(second))

    assert rp.verify_id_token(token["id_token"])["sub"]
    assert (served(first, "POST", "/login"), served(second, "POST", "/pin")) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_parallel_refreshes_over_both_instances_let_one_win_and_end_the_family(
    idp, cluster, browser
):
    rp = relying_party(idp)
    token = rp.sign_in(browser)
    start = threading.Barrier(8)

    def attempt(index: int) -> requests.Response:
        start.wait(10)
        return refresh(rp, token["refresh_token"], cluster.pinned(cluster.instances[index % 2]))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(8)))

    winners = [answer for answer in answers if answer.status_code == 200]
    assert len(winners) == 1, [answer.status_code for answer in answers]
    assert {answer.json()["error"] for answer in answers if answer.status_code != 200} == {
        "invalid_grant"
    }
    # The stolen-token signal reached the winner too: its successor and its access are dead.
    successor = winners[0].json()
    for instance in cluster.instances:
        assert refresh(rp, successor["refresh_token"], cluster.pinned(instance)).status_code == 400
        assert userinfo_status(idp, successor["access_token"], cluster.pinned(instance)) == 401


def test_a_second_client_signs_in_on_the_other_instance_without_a_new_login(idp, cluster, browser):
    first, second = cluster.instances
    portal, phone = relying_party(idp, name="e:service"), relying_party(idp, name="cloud.phone")
    browser.http.headers.update(cluster.pinned(first))
    portal_sid = portal.verify_id_token(portal.sign_in(browser)["id_token"])["sid"]

    browser.http.headers.update(cluster.pinned(second))
    phone_claims = phone.verify_id_token(phone.sign_in(browser)["id_token"])

    assert browser.logins == 1
    assert phone_claims["sid"] == portal_sid


def test_a_logout_on_one_instance_ends_the_session_on_both_and_reaches_the_rp(
    idp, cluster, browser
):
    first, second = cluster.instances
    receiver = BackchannelReceiver()
    try:
        portal = relying_party(idp, "--backchannel-logout-uri", receiver.uri, name="e:service")
        token = portal.sign_in(browser)

        response = browser.http.get(
            idp.url("/end_session"),
            params={"id_token_hint": token["id_token"]},
            headers=cluster.pinned(first),
            timeout=10,
        )
        assert urlsplit(response.url).path == "/logged-out"
        logout_token = receiver.wait()
    finally:
        receiver.stop()
    assert logout_token.count(".") == 2
    for instance in (first, second):
        browser.http.headers.update(cluster.pinned(instance))
        again = portal.callback_params(browser.visit(portal.authorization_url(prompt="none")))
        assert again["error"] == "login_required"
        assert userinfo_status(idp, token["access_token"], cluster.pinned(instance)) == 401


def test_a_login_whose_instance_is_killed_finishes_on_the_other(idp, cluster, browser):
    first, second = cluster.instances
    rp = relying_party(idp)
    begin_login(browser, rp, cluster.pinned(first))

    first.kill()
    # A browser retries a GET whose kept-alive connection died under it; this client starts a
    # new connection as such a retry would (HAProxy's reused connection to the killed instance
    # went with it).
    browser.http.close()
    before = served(second, "POST", "/pin")
    token = finish_login(browser, rp, {})

    assert rp.verify_id_token(token["id_token"])["sub"]
    assert served(second, "POST", "/pin") == before + 1


def test_a_rolling_restart_under_load_loses_no_request(idp, cluster, browser):
    rp = relying_party(idp)
    families = [rp.sign_in(browser) for _ in range(LOAD_CLIENTS)]
    outcomes: collections.Counter[str] = collections.Counter()
    failures: dict[str, str] = {}  # an answer of each kind that failed, for the message
    stop = threading.Event()

    def load(family: dict) -> None:
        with requests.Session() as session:  # keep-alive to HAProxy, as a relying party
            while not stop.wait(LOAD_PAUSE_SECONDS):
                for name, send in (
                    ("refresh", lambda: refresh(rp, family["refresh_token"], session=session)),
                    (
                        "userinfo",
                        lambda: session.get(
                            idp.url("/userinfo"),
                            headers={"Authorization": f"Bearer {family['access_token']}"},
                            timeout=30,
                        ),
                    ),
                    (
                        "discovery",
                        lambda: session.get(
                            idp.url("/.well-known/openid-configuration"), timeout=30
                        ),
                    ),
                ):
                    try:
                        response = send()
                    except requests.RequestException as error:
                        outcomes[f"{name} {type(error).__name__}"] += 1
                        continue
                    outcomes[f"{name} {response.status_code}"] += 1
                    if response.status_code != 200:
                        failures.setdefault(name, response.text[:200])
                    if name == "refresh" and response.status_code == 200:
                        family.update(response.json())

    workers = [threading.Thread(target=load, args=(family,)) for family in families]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    try:
        for instance in cluster.instances:
            instance.terminate()
            instance.start()
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    elapsed = time.monotonic() - started

    print(
        f"\nrolling restart of {len(cluster.instances)} instances in {elapsed:.1f} s,"
        " requests by outcome:"
    )
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    assert outcomes and all(outcome.endswith(" 200") for outcome in outcomes), failures
    assert outcomes["refresh 200"] >= LOAD_CLIENTS * 2  # the load went on through both stops
    # Every family has exactly one live refresh token: the one its client holds.
    with idp.app.app_context():
        live = db.session.execute(
            text(
                "SELECT t.grant_id, count(*) FROM oauth_tokens t"
                " JOIN oauth_grants g ON g.id = t.grant_id"
                " JOIN oauth_clients c ON c.id = g.client_id"
                " WHERE c.client_id = :client AND t.kind = 'refresh_token'"
                " AND t.used_at IS NULL AND t.revoked_at IS NULL AND g.revoked_at IS NULL"
                " GROUP BY t.grant_id"
            ),
            {"client": rp.client_id},
        ).all()
        db.session.remove()
    assert sorted(count for _, count in live) == [1] * LOAD_CLIENTS
    for family in families:
        assert refresh(rp, family["refresh_token"]).status_code == 200


def test_a_revoked_key_is_out_of_use_on_every_instance_when_the_command_returns(
    idp, cluster, browser, operator_app
):
    rp = relying_party(idp)
    token = rp.sign_in(browser)["access_token"]
    leaked = keys._header(token)["kid"]
    # Every worker of both instances has the key cached (a few requests reach each).
    for instance in cluster.instances:
        assert published_kids(idp, cluster.pinned(instance)) == {leaked}
        assert {userinfo_status(idp, token, cluster.pinned(instance)) for _ in range(6)} == {200}
    runner = operator_app.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0

    revoked = runner.invoke(args=["keys", "revoke", leaked, "--yes"])

    assert revoked.exit_code == 0, revoked.output
    assert "no longer published or accepted by any server process" in revoked.stdout
    for instance in cluster.instances:
        assert leaked not in published_kids(idp, cluster.pinned(instance))
        assert {userinfo_status(idp, token, cluster.pinned(instance)) for _ in range(6)} == {401}
    fresh = rp.sign_in(browser)["access_token"]
    assert keys._header(fresh)["kid"] != leaked


def published_kids(idp: LiveIdp, headers: dict) -> set[str]:
    """The key ids in JWKS over a few requests (which reach several workers)."""
    return {
        key["kid"]
        for _ in range(6)
        for key in requests.get(idp.url("/jwks.json"), headers=headers, timeout=10).json()["keys"]
    }
