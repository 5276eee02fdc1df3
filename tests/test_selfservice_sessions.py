"""The sessions page, /account/sessions: the account's live sessions, ending one or all of
them (their tokens end and the relying parties are told), the account's recent sign-ins and
security events, and the defences of its form."""

import html
import re
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import audit
from idp.accounts.models import User
from idp.audit.models import AuditEvent
from idp.authn.models import Session
from idp.platform import clock
from idp.platform.extensions import db
from idp.selfservice import activity
from tests.conftest import PASSWORD, activate, csrf_token, login, post_form
from tests.oidc_fixtures import Browser

PAGE = "/account/sessions"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
EN = {"Accept-Language": "en"}
DE = {"Accept-Language": "de"}


def browser_client(app, *, ip: str, user_agent: str):
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": ip, "HTTP_USER_AGENT": user_agent})
    return client


def signed_in(app, outbox, *, ip="203.0.113.7", user_agent=FIREFOX, username="anna"):
    client = browser_client(app, ip=ip, user_agent=user_agent)
    login(client, outbox, username=username)
    return client


def entries(page: str) -> list[dict]:
    """The sessions listed on the page: what its heading says, its button's value, and
    whether it is marked as this browser's."""
    found = []
    for item in re.findall(r'<li class="session[^"]*">.*?</li>', page, re.S):
        heading = re.search(r"<h2[^>]*>(.*?)</h2>", item, re.S).group(1)
        found.append(
            {
                "agent": html.unescape(re.sub(r"<[^>]+>.*", "", heading)).strip(),
                "value": re.search(r'name="end" value="([^"]+)"', item).group(1),
                "current": 'class="session current"' in item,
                "text": html.unescape(re.sub(r"<[^>]+>", " ", item)),
            }
        )
    return found


def activity_rows(page: str) -> list[str]:
    body = re.search(r"<tbody>(.*?)</tbody>", page, re.S)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S) if body else []
    return [
        " | ".join(html.unescape(c).strip() for c in re.findall(r"<td>(.*?)</td>", r, re.S))
        for r in rows
    ]


def state(app) -> dict:
    """What a POST of the page could change."""
    with app.app_context():
        return {
            "sessions": [
                (s.id, s.revoked_at) for s in db.session.scalars(db.select(Session).order_by("id"))
            ],
            "audit": db.session.scalar(db.select(db.func.count(AuditEvent.id))),
        }


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)).all()
        db.session.expunge_all()
        return rows


# --- Without a session ------------------------------------------------------------------------


def test_without_a_session_the_login_comes_first_and_leads_back(app, client, outbox):
    activate(app, client, outbox)
    visitor = browser_client(app, ip="203.0.113.7", user_agent=FIREFOX)
    token = csrf_token(visitor.get("/login").text)
    for response in (
        visitor.get(PAGE),
        visitor.post(PAGE, data={"csrf_token": token, "end-all": "1"}),
    ):
        assert response.status_code == 303
        assert response.headers["Location"] == "/login?next=/account/sessions"
    landed = login(visitor, outbox, next_path=PAGE)
    assert landed.headers["Location"] == PAGE


# --- The list ---------------------------------------------------------------------------------


def test_the_page_lists_the_live_sessions_this_one_marked(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    laptop = signed_in(app, outbox, ip="203.0.113.7", user_agent=FIREFOX)
    phone = signed_in(app, outbox, ip="2001:db8:1:2::5", user_agent=IPHONE)
    old = signed_in(app, outbox, ip="198.51.100.1", user_agent="curl/8.0")
    with app.app_context():
        newest = db.session.scalars(db.select(Session).order_by(Session.id.desc())).first()
        newest.revoked_at = clock.now()  # ended: no longer listed
        db.session.commit()

    page = laptop.get(PAGE, headers=EN)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    listed = entries(page.text)
    assert [(e["agent"], e["current"]) for e in listed] == [
        ("Firefox 125 on Windows 10", True),
        ("Mobile Safari 17 on iOS 17", False),
    ]
    assert "This browser" in listed[0]["text"]
    assert "203.0.113.0/24" in listed[0]["text"]
    assert "2001:db8:1:2::/64" in listed[1]["text"]
    # The network only, never the address; no session's token or sid, nor any other id.
    assert "203.0.113.7" not in page.text and "2001:db8:1:2::5" not in page.text
    with app.app_context():
        rows = db.session.scalars(db.select(Session)).all()
        for row in rows:
            assert row.sid not in page.text
        assert {e["value"] for e in listed} <= {activity.handle_of(row) for row in rows}
        assert all(e["value"] not in {str(row.id) for row in rows} for e in listed)
    # The phone sees the same two, its own marked.
    assert [e["current"] for e in entries(phone.get(PAGE).text)] == [True, False]

    # An idle session is no longer live, and no longer listed.
    frozen_clock.advance(seconds=app.config["SESSION_IDLE_TIMEOUT"] - 30)
    laptop.get(PAGE)
    frozen_clock.advance(seconds=60)
    assert [e["agent"] for e in entries(laptop.get(PAGE, headers=EN).text)] == [
        "Firefox 125 on Windows 10"
    ]
    assert old  # signed in, ended above


def test_times_are_in_her_language_and_the_sites_time_zone(app, client, outbox):
    activate(app, client, outbox)
    laptop = signed_in(app, outbox)
    with app.app_context():
        started = db.session.scalars(db.select(Session)).one().created_at
    local = started.astimezone(ZoneInfo(app.config["BABEL_DEFAULT_TIMEZONE"]))
    zone_de = {"CET": "MEZ", "CEST": "MESZ"}[local.tzname()]
    german = f"{local:%d.%m.%Y}, {local:%H:%M} Uhr ({zone_de})"
    assert german in entries(laptop.get(PAGE, headers=DE).text)[0]["text"]
    english = laptop.get(PAGE, headers=EN).text
    hour = local.hour % 12 or 12
    pattern = (
        rf"{local:%b} {local.day}, {local.year}, {hour}:{local:%M}\W?"
        rf"{'AM' if local.hour < 12 else 'PM'} {local.tzname()}"
    )
    assert re.search(pattern, english), pattern


def test_more_sessions_than_listed_are_counted_and_end_all_ends_them(app, client, outbox):
    activate(app, client, outbox)
    laptop = signed_in(app, outbox)
    with app.app_context():
        user = db.session.scalar(db.select(User))
        current = db.session.scalars(db.select(Session)).one()
        for n in range(activity.MAX_LISTED + 2):
            db.session.add(
                Session(
                    token_hash=f"{n:064d}",
                    sid=f"sid-{n}",
                    user_id=user.id,
                    auth_time=current.auth_time,
                    amr=["pwd"],
                    created_at=current.created_at,
                    last_seen_at=current.last_seen_at,
                    expires_at=current.expires_at,
                )
            )
        db.session.commit()
    page = laptop.get(PAGE, headers=EN).text
    assert len(entries(page)) == activity.MAX_LISTED
    assert "3 more sessions are not listed" in page
    response = post_form(laptop, PAGE, {"end-all": ""})
    assert response.headers["Location"] == "/logged-out"
    with app.app_context():
        assert (
            db.session.scalar(
                db.select(db.func.count(Session.id)).where(Session.revoked_at.is_(None))
            )
            == 0
        )


# --- Ending sessions, end to end with relying parties -----------------------------------------


def logout_claims(idp, token: str) -> dict:
    keys = KeySet.import_key_set(requests.get(idp.url("/jwks.json"), timeout=5).json())
    return jwt.decode(token, keys, algorithms=["ES256"]).claims


def wait_for_logout_tokens(receiver, count: int, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(receiver.tokens) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.tokens) >= count, receiver.tokens
    return receiver.tokens


def status_at_userinfo(idp, access_token: str) -> int:
    return requests.get(
        idp.url("/userinfo"), headers={"Authorization": f"Bearer {access_token}"}, timeout=5
    ).status_code


def introspected(idp, rp, token: str) -> bool:
    response = requests.post(
        idp.url("/introspect"),
        data={"token": token},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert response.status_code == 200
    return response.json()["active"]


def refreshes(idp, rp, refresh_token: str) -> bool:
    try:
        rp.session().refresh_token(idp.url("/token"), refresh_token=refresh_token)
    except OAuthError as error:
        if error.error != "invalid_grant":  # refused for another reason: the test fails with it
            raise
        return False
    return True


def sessions_page_of(browser: Browser, **headers) -> requests.Response:
    response = browser.http.get(browser.idp.url(PAGE), headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response


def submit(browser: Browser, data: dict, page: requests.Response | None = None):
    page = page or sessions_page_of(browser)
    return browser.http.post(
        browser.idp.url(PAGE),
        data={"csrf_token": csrf_token(page.text), **data},
        allow_redirects=False,
        timeout=10,
    )


@pytest.fixture
def two_browsers(idp, outbox, user, make_rp, backchannel):
    """Anna signed in at the portal in two browsers (a laptop and a phone); the portal takes
    back-channel logout tokens."""
    portal = make_rp("--backchannel-logout-uri", backchannel.uri, name="e:service")
    laptop, phone = Browser(idp, outbox), Browser(idp, outbox)
    laptop.http.headers["User-Agent"] = FIREFOX
    phone.http.headers["User-Agent"] = IPHONE
    tokens = {"laptop": portal.sign_in(laptop), "phone": portal.sign_in(phone)}
    sids = {name: portal.verify_id_token(t["id_token"])["sid"] for name, t in tokens.items()}
    return portal, laptop, phone, tokens, sids


def test_ending_the_other_browsers_session_ends_its_tokens_and_tells_the_portal(
    idp, two_browsers, backchannel
):
    portal, laptop, phone, tokens, sids = two_browsers
    page = sessions_page_of(laptop, **EN)
    [other] = [e for e in entries(page.text) if not e["current"]]
    assert other["agent"] == "Mobile Safari 17 on iOS 17"

    response = submit(laptop, {"end": other["value"]}, page)
    assert response.status_code == 303
    assert response.headers["Location"] == PAGE
    assert "The session has ended" in laptop.http.get(idp.url(PAGE), headers=EN, timeout=5).text
    # Shown once only.
    assert "The session has ended" not in sessions_page_of(laptop, **EN).text

    claims = logout_claims(idp, backchannel.wait())
    assert claims["sid"] == sids["phone"] and claims["aud"] == portal.client_id
    assert len(backchannel.tokens) == 1  # the laptop's session goes on
    ended = tokens["phone"]
    assert not refreshes(idp, portal, ended["refresh_token"])
    assert status_at_userinfo(idp, ended["access_token"]) == 401
    assert not introspected(idp, portal, ended["access_token"])
    # The phone's next visit to the portal asks for a new login; the laptop's does not.
    logins = phone.logins
    portal.sign_in(phone)
    assert phone.logins == logins + 1
    logins = laptop.logins
    portal.sign_in(laptop)
    assert laptop.logins == logins
    assert refreshes(idp, portal, tokens["laptop"]["refresh_token"])

    [event] = events(idp.app, "session.ended")
    assert (event.actor, event.details["sid"], event.details["current"]) == (
        "user",
        sids["phone"],
        False,
    )
    assert event.ip == "127.0.0.1"

    # The same value again: that session is gone, nothing changes.
    before = state(idp.app)
    again = submit(laptop, {"end": other["value"]})
    assert again.status_code == 404
    assert state(idp.app) == before


def test_ending_this_browsers_own_session_signs_it_out(idp, two_browsers, backchannel):
    portal, laptop, _phone, tokens, sids = two_browsers
    [mine] = [e for e in entries(sessions_page_of(laptop).text) if e["current"]]
    response = submit(laptop, {"end": mine["value"]})
    assert response.status_code == 303 and response.headers["Location"] == "/logged-out"
    assert logout_claims(idp, backchannel.wait())["sid"] == sids["laptop"]
    assert not refreshes(idp, portal, tokens["laptop"]["refresh_token"])
    assert laptop.http.get(idp.url(PAGE), allow_redirects=False, timeout=5).status_code == 303
    assert refreshes(idp, portal, tokens["phone"]["refresh_token"])


def test_end_all_ends_every_session_and_tells_every_portal(idp, two_browsers, make_rp, backchannel):
    portal, laptop, phone, tokens, sids = two_browsers
    phone_app = make_rp("--backchannel-logout-uri", backchannel.uri, name="cloud.phone")
    phone_app_token = phone_app.sign_in(phone)

    response = submit(laptop, {"end-all": "1"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/logged-out"
    assert "idp_session=;" in response.headers["Set-Cookie"]  # the cookie is cleared
    assert (
        "You are signed out" in laptop.http.get(idp.url("/logged-out"), headers=EN, timeout=5).text
    )

    received = [logout_claims(idp, t) for t in wait_for_logout_tokens(backchannel, 3)]
    assert sorted((c["aud"], c["sid"]) for c in received) == sorted(
        [
            (portal.client_id, sids["laptop"]),
            (portal.client_id, sids["phone"]),
            (phone_app.client_id, sids["phone"]),
        ]
    )
    for token, rp in [(tokens["laptop"], portal), (tokens["phone"], portal)]:
        assert not refreshes(idp, rp, token["refresh_token"])
        assert status_at_userinfo(idp, token["access_token"]) == 401
    assert not refreshes(idp, phone_app, phone_app_token["refresh_token"])
    assert laptop.http.get(idp.url(PAGE), allow_redirects=False, timeout=5).status_code == 303
    for browser in (laptop, phone):
        logins = browser.logins
        portal.sign_in(browser)
        assert browser.logins == logins + 1
    ended = events(idp.app, "session.ended")
    assert sorted(e.details["sid"] for e in ended) == sorted(sids.values())
    assert {(e.actor, e.details.get("everywhere")) for e in ended} == {("user", True)}


# --- Another account's session ----------------------------------------------------------------


def test_no_value_ends_another_accounts_session(app, client, outbox):
    activate(app, client, outbox)
    activate(app, app.test_client(), outbox, username="bert")
    bert = signed_in(app, outbox, username="bert", ip="198.51.100.20", user_agent=IPHONE)
    anna = signed_in(app, outbox)
    with app.app_context():
        berts = db.session.scalars(
            db.select(Session).join(User).where(User.username == "bert")
        ).one()
        bert_values = [activity.handle_of(berts), str(berts.id), berts.sid]
    before = state(app)
    page = anna.get(PAGE, headers=EN)
    assert "Mobile Safari" not in page.text and "198.51.100" not in page.text
    # Bert's handle is no session of hers; his row id and sid have no handle's form.
    for value, status in zip(bert_values, (404, 400, 400), strict=True):
        response = anna.post(
            PAGE, data={"csrf_token": csrf_token(page.text), "end": value}, headers=EN
        )
        assert response.status_code == status, value
        assert ("Nothing was changed" if status == 404 else "could not be processed") in (
            response.text
        )
        assert state(app) == before
    assert "Signed in as bert" in bert.get("/", headers=EN).text
    # Her own sessions are all that "end all" ends.
    post_form(anna, PAGE, {"end-all": "1"})
    assert "Signed in as bert" in bert.get("/", headers=EN).text


# --- Bad input --------------------------------------------------------------------------------


# (form, status, what the page says): "own" stands for the value of her own session's button.
BAD_INPUT = [
    ({"csrf_token": None, "end": "own"}, 400, "This form has expired"),
    ({"csrf_token": "forged", "end-all": "1"}, 400, "This form has expired"),
    ({"csrf_token": None, "end-all": "1"}, 400, "This form has expired"),
    ({}, 400, "could not be processed"),
    ({"end": "own", "end-all": "1"}, 400, "could not be processed"),
    ({"end": ""}, 400, "could not be processed"),
    ({"end": "1"}, 400, "could not be processed"),
    ({"end": "../../1"}, 400, "could not be processed"),
    ({"end": "0" * 31 + "\x00"}, 400, "could not be processed"),
    ({"end": "A" * 32}, 400, "could not be processed"),
    ({"end": "a" * 10240}, 400, "could not be processed"),
    ({"end-all": "x" * 10240}, 400, "could not be processed"),
    ({"end": "0" * 32}, 404, "Nothing was changed"),
]


def test_bad_input_is_a_clear_4xx_and_changes_nothing(app, client, outbox):
    activate(app, client, outbox)
    laptop = signed_in(app, outbox)
    other = signed_in(app, outbox, ip="2001:db8::1", user_agent=IPHONE)
    page = laptop.get(PAGE, headers=EN)
    own = entries(page.text)[0]["value"]
    before = state(app)
    for data, status, says in BAD_INPUT:
        form = {"csrf_token": csrf_token(page.text)}
        form.update({name: own if value == "own" else value for name, value in data.items()})
        form = {name: value for name, value in form.items() if value is not None}
        response = laptop.post(PAGE, data=form, headers=EN)
        case = {name: value[:40] for name, value in data.items() if value}
        assert response.status_code == status, case
        assert says in response.text, case
        assert response.headers.get("Location") is None, case
        assert state(app) == before, case
    assert len(entries(laptop.get(PAGE).text)) == 2
    assert other.get("/", headers=EN).status_code == 200


def test_any_other_values_are_a_4xx_and_end_nothing(app, client, outbox):
    activate(app, client, outbox)
    laptop = signed_in(app, outbox)
    token = csrf_token(laptop.get(PAGE).text)
    before = state(app)
    values = st.one_of(
        st.none(), st.text(max_size=200), st.text("0123456789abcdef", min_size=32, max_size=32)
    )

    @settings(max_examples=40, deadline=None, database=None)
    @given(end=values, end_all=values)
    def post(end, end_all):
        assume(not (end is None and end_all in ("", "1")))  # "end all" itself
        data = {"csrf_token": token, "end": end, "end-all": end_all}
        response = laptop.post(PAGE, data={k: v for k, v in data.items() if v is not None})
        assert response.status_code in (400, 404)
        assert state(app) == before

    post()


def test_a_non_utf8_body_is_a_clear_400(app, client, outbox):
    activate(app, client, outbox)
    laptop = signed_in(app, outbox)
    token = csrf_token(laptop.get(PAGE).text)
    before = state(app)
    response = laptop.post(
        PAGE,
        data=f"csrf_token={token}&end=%FF%FE%00".encode(),
        content_type="application/x-www-form-urlencoded",
        headers=EN,
    )
    assert response.status_code == 400
    assert state(app) == before


def test_posts_are_rate_limited(make_app, outbox):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_ACCOUNT_SESSIONS_PER_IP="2 per minute")
    activate(app, app.test_client(), outbox)
    laptop = signed_in(app, outbox)
    token = csrf_token(laptop.get(PAGE).text)
    statuses = [
        laptop.post(PAGE, data={"csrf_token": token, "end": "0" * 32}).status_code for _ in range(3)
    ]
    assert statuses == [404, 404, 429]


# --- The account's recent events --------------------------------------------------------------


def test_activity_shows_her_sign_ins_failed_and_successful_in_german_and_english(
    app, client, outbox
):
    activate(app, client, outbox)
    activate(app, app.test_client(), outbox, username="bert")
    # Bert's own events are none of hers.
    post_form(
        browser_client(app, ip="198.51.100.20", user_agent=IPHONE),
        "/login",
        {"username": "bert", "password": "wrong"},
    )
    laptop = browser_client(app, ip="203.0.113.7", user_agent=FIREFOX)
    post_form(laptop, "/login", {"username": "anna", "password": "not her password"})
    post_form(laptop, "/login", {"username": "anna", "password": PASSWORD})
    post_form(laptop, "/pin", {"pin": "000000" if outbox.last_pin() != "000000" else "111111"})
    post_form(laptop, "/pin", {"pin": outbox.last_pin()})

    english = laptop.get(PAGE, headers=EN).text
    rows = activity_rows(english)
    assert [row.split(" | ")[1:] for row in rows] == [
        ["Signed in", "203.0.113.0/24"],
        ["Wrong SMS PIN", "203.0.113.0/24"],
        ["Sign-in failed: wrong password", "203.0.113.0/24"],
        ["Access activated", "127.0.0.0/24"],
    ]
    assert 'class="failed"' in english
    german = [row.split(" | ")[1] for row in activity_rows(laptop.get(PAGE, headers=DE).text)]
    assert german == [
        "Angemeldet",
        "Falsche SMS-PIN",
        "Anmeldung fehlgeschlagen: falsches Passwort",
        "Zugang aktiviert",
    ]
    for page in (english, laptop.get(PAGE, headers=DE).text):
        assert "198.51.100" not in page and "203.0.113.7" not in page


def test_activity_names_security_events_newest_first_and_only_the_newest(
    app, client, outbox, frozen_clock
):
    activate(app, client, outbox)
    with app.app_context():
        anna = db.session.scalar(db.select(User).where(User.username == "anna"))
        start = clock.now() + timedelta(seconds=30)
        for n in range(25):  # each from another network: 25 lines
            audit.record(
                "login.failed",
                now=start,
                actor="user",
                user=anna,
                ip=f"192.0.{n}.9",
                reason="throttled",
            )
        happened = [
            ("password.reset_requested", "cli:root", None, {}),
            ("password.reset", "user", "192.0.2.10", {}),
            ("user.phone_changed", "cli:root", None, {"old": "+49 … 78", "new": "+49 … 99"}),
            ("session.ended", "user", "192.0.2.11", {"sid": "x"}),
            ("user.unlocked", "cli:root", None, {}),
            ("pin.sent", "user", "192.0.2.12", {}),  # not a security event: not shown
        ]
        for n, (event, actor, ip, details) in enumerate(happened):
            audit.record(
                event,
                now=start + timedelta(minutes=n + 1),
                actor=actor,
                user=anna,
                ip=ip,
                **details,
            )
        db.session.commit()
    frozen_clock.advance(hours=1)
    laptop = signed_in(app, outbox)
    rows = activity_rows(laptop.get(PAGE, headers=EN).text)
    assert len(rows) == activity.RECENT_EVENTS
    whats = [row.split(" | ")[1:] for row in rows]
    assert whats[:7] == [
        ["Signed in", "203.0.113.0/24"],
        ["Sign-in locks lifted (by support)", "–"],
        ["Session ended", "192.0.2.0/24"],
        ["Mobile number changed to +49 … 99 (by support)", "–"],
        ["Password reset", "192.0.2.0/24"],
        ["Password reset requested (by support)", "–"],
        ["Sign-in refused: too many attempts from this network", "192.0.24.0/24"],
    ]
    assert "root" not in laptop.get(PAGE).text


def test_a_run_of_one_event_is_one_line_and_pushes_no_other_off_the_list(
    app, client, outbox, frozen_clock
):
    """Anyone can ask for her password reset again and again: the refusals are one line."""
    activate(app, client, outbox)
    with app.app_context():
        anna = db.session.scalar(db.select(User).where(User.username == "anna"))
        start = clock.now() + timedelta(seconds=30)
        audit.record("password.change_failed", now=start, actor="user", user=anna, ip="192.0.2.1")
        for n in range(150):
            audit.record(
                "password.reset_refused",
                now=start + timedelta(seconds=n + 1),
                actor="user",
                user=anna,
                ip="198.51.100.7",
                reason="rate_limited",
            )
        db.session.commit()
    frozen_clock.advance(hours=1)
    laptop = signed_in(app, outbox)
    whats = [row.split(" | ")[1:] for row in activity_rows(laptop.get(PAGE, headers=EN).text)]
    assert whats[1:] == [
        ["Password reset refused: requested too often (150 times)", "198.51.100.0/24"],
        ["Password change refused: wrong current password", "192.0.2.0/24"],
        ["Access activated", "127.0.0.0/24"],
    ]
    german = laptop.get(PAGE, headers={"Accept-Language": "de"}).text
    assert "(150-mal)" in german


def test_activity_names_refused_changes_and_resets_and_a_hard_lock(
    app, client, outbox, frozen_clock
):
    """What someone else tried with her account shows too: a mobile number change refused, a
    password reset refused, the lock that only support lifts."""
    activate(app, client, outbox)
    with app.app_context():
        anna = db.session.scalar(db.select(User).where(User.username == "anna"))
        start = clock.now() + timedelta(seconds=30)
        happened = [
            ("phone.change_failed", "user", "192.0.2.1", {"reason": "password"}),
            ("phone.change_failed", "user", "192.0.2.2", {"reason": "session"}),
            ("password.reset_refused", "user", "192.0.2.3", {"reason": "rate_limited"}),
            ("lockout.hard_locked", "system", None, {"step": "pin", "failures": 100}),
        ]
        for n, (event, actor, ip, details) in enumerate(happened):
            audit.record(
                event, now=start + timedelta(minutes=n), actor=actor, user=anna, ip=ip, **details
            )
        db.session.commit()
    frozen_clock.advance(hours=1)
    laptop = signed_in(app, outbox)
    whats = [row.split(" | ")[1:] for row in activity_rows(laptop.get(PAGE, headers=EN).text)]
    assert whats[1:5] == [
        [
            "Locked after 100 wrong SMS PINs in a row, until support lifts it (by the system)",
            "–",
        ],
        ["Password reset refused: requested too often", "192.0.2.0/24"],
        ["Mobile number change refused: confirmed in a browser not signed in", "192.0.2.0/24"],
        ["Mobile number change refused: wrong current password", "192.0.2.0/24"],
    ]
    german = laptop.get(PAGE, headers={"Accept-Language": "de"}).text
    assert "Änderung der Mobilnummer abgelehnt: aktuelles Passwort falsch" in german
    assert "Gesperrt nach 100 falschen SMS-PINs in Folge" in german


@pytest.mark.parametrize(
    ("user_agent", "english", "german"),
    [
        (FIREFOX, "Firefox 125 on Windows 10", "Firefox 125 unter Windows 10"),
        (IPHONE, "Mobile Safari 17 on iOS 17", "Mobile Safari 17 unter iOS 17"),
        ("curl/8.5.0", "curl 8", "curl 8"),
        (None, "Unknown browser", "Unbekannter Browser"),
        ("\x00<script>" * 30, "Unknown browser", "Unbekannter Browser"),
    ],
)
def test_the_browser_and_system_are_named_from_the_user_agent(app, user_agent, english, german):
    for language, expected in (("en", english), ("de", german)):
        with app.test_request_context(headers={"Accept-Language": language}):
            assert activity.describe_agent(user_agent) == expected
