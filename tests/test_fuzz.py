"""Property-based fuzzing of every form and protocol endpoint with Hypothesis.

Properties, for any input: never a 5xx; the protocol endpoints answer JSON (application/json or
application/scim+json) on 4xx; no redirect leaves for an address that was not registered; a
refused SCIM change changes nothing; and afterwards nothing is corrupted: a normal user still
signs in with password and SMS PIN, and `idp audit verify` passes.

Each property mixes pure junk (unicode, control characters, strings of some KB, non-UTF-8 bytes
in raw bodies) with partly valid input (a registered client, a real code, a real link, a valid
CSRF token taken from the page), so that the fuzzing gets past the first gate. derandomize
keeps CI reproducible."""

import base64
import hashlib
import json
import operator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD, activate, csrf_token, invite, login, path_of, post_form

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

REDIRECT_URI = "https://rp.example/callback"
POST_LOGOUT_URI = "https://rp.example/bye"
VERIFIER = "v" * 50
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=")
CHALLENGE = CHALLENGE.decode()
JSON_TYPES = {"application/json", "application/scim+json"}
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CUSTOMER = "urn:ecotel:params:scim:schemas:extension:customer:2.0:User"
# Stands for a value that the test makes real at run time (a fresh code, a CSRF token, ...).
REAL = "\x00REAL\x00"

# --- Strategies -------------------------------------------------------------------------------

# Any unicode (control characters included; surrogates cannot be encoded at all), plain ASCII,
# and strings of a few KB.
LONG = st.builds(operator.mul, st.text(min_size=1, max_size=6), st.integers(200, 700))
TEXT = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec="ascii"), max_size=30),
    st.text(st.characters(codec="ascii", categories=["Cc"]), max_size=8),
    LONG,
)
SHORT = st.text(max_size=20)
# Header values reach the server as latin-1; line breaks never survive an HTTP parser.
HEADER = st.binary(max_size=60).map(
    lambda raw: raw.decode("latin-1").replace("\r", "").replace("\n", "")
)
RAW = st.one_of(st.binary(max_size=300), st.binary(min_size=1, max_size=4).map(lambda b: b * 500))
EXTRA_FIELDS = st.dictionaries(SHORT, TEXT, max_size=3)


def either(*valid):
    """One of the valid values, or junk."""
    return st.one_of(st.sampled_from(valid), TEXT)


def content_types(*valid):
    """A Content-Type header: valid ones or junk (without line breaks, as for HEADER)."""
    return st.one_of(st.sampled_from(valid), HEADER)


def mostly(valid, junk, ratio: int = 3):
    """`valid` ratio times as often as `junk` (so that fuzzing gets past the first gate)."""
    return st.sampled_from([True] * ratio + [False]).flatmap(lambda ok: valid if ok else junk)


DROP = "\x00DROP\x00"


def mutated(valid: dict, alternatives: dict):
    """Valid parameters, of which up to three are left out, replaced by a near-valid value or
    junk (from `alternatives`, else TEXT), or added (keys only in `alternatives`)."""
    keys = sorted(set(valid) | set(alternatives))

    def change(key):
        return st.tuples(st.just(key), st.one_of(st.just(DROP), alternatives.get(key, TEXT)))

    def apply(changes):
        params = dict(valid)
        for key, value in changes:
            if value == DROP:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    return st.lists(st.sampled_from(keys).flatmap(change), max_size=3).map(apply)


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SHORT, inner, max_size=4),
    max_leaves=12,
)


# --- The world a fuzz run plays in ------------------------------------------------------------


class World:
    """Anna (active), Bert (invited, with a real link), a confidential web client, the ordering
    system's service client and real tokens to mix into the junk."""

    def __init__(self, app, outbox, clock):
        self.app = app
        self.outbox = outbox
        self.clock = clock
        activate(app, app.test_client(), outbox)
        invite(app, username="bert", phone="+4915112345679", name="Bert")
        self.bert_link = path_of(self.outbox.last_link())
        web = self.cli(
            "clients",
            "create",
            "Portal",
            "--json",
            "--redirect-uri",
            REDIRECT_URI,
            "--post-logout-redirect-uri",
            POST_LOGOUT_URI,
        )
        self.client_id, self.client_secret = web["client_id"], web["client_secret"]
        service = self.cli(
            "clients",
            "create",
            "Ordering",
            "--grant",
            "client_credentials",
            "--scope",
            "scim",
            "--json",
        )
        self.service_id, self.service_secret = service["client_id"], service["client_secret"]
        self.browser = self.signed_in()
        tokens = self.redeem(self.code(self.browser))
        assert tokens.status_code == 200, tokens.text
        body = tokens.json
        self.access_token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.id_token = body["id_token"]

    def cli(self, *args) -> dict:
        result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def signed_in(self):
        browser = self.app.test_client()
        login(browser, self.outbox)
        return browser

    def authorize_params(self, **extra) -> dict:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email offline_access",
            "state": "st",
            "nonce": "n",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
            **extra,
        }

    def code(self, browser) -> str:
        response = browser.get("/authorize", query_string=self.authorize_params())
        assert response.status_code == 302, response.text
        return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]

    def redeem(self, code: str):
        return self.app.test_client().post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": VERIFIER,
            },
            headers=basic(self.client_id, self.client_secret),
        )

    def service_token(self) -> str:
        response = self.app.test_client().post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "scim"},
            headers=basic(self.service_id, self.service_secret),
        )
        assert response.status_code == 200, response.text
        return response.json["access_token"]

    def assert_intact(self) -> None:
        """After the run: Anna still signs in with password and PIN; the audit chain holds."""
        # Junk passwords may have locked the account for a while (that is the defence working).
        self.clock.advance(seconds=self.app.config["LOCKOUT_MAX_SECONDS"] + 1)
        browser = self.app.test_client()
        response = login(browser, self.outbox)
        assert response.headers["Location"].endswith("/account")
        home = browser.get("/")
        assert home.status_code == 200 and "anna" in home.text
        result = self.app.test_cli_runner().invoke(args=["audit", "verify"])
        assert result.exit_code == 0, result.output


@pytest.fixture
def world(app, outbox, frozen_clock) -> World:
    return World(app, outbox, frozen_clock)


def basic(client_id: str, secret: str) -> dict:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assert_no_server_error(response) -> None:
    event(f"{response.request.method} {response.status_code}")  # --hypothesis-show-statistics
    assert response.status_code < 500, (response.status_code, response.get_data()[:500])


def assert_protocol_answer(response, *, oauth=True) -> None:
    """No 5xx; a 4xx is JSON that a client library can parse."""
    assert_no_server_error(response)
    if response.status_code >= 400:
        assert response.mimetype in JSON_TYPES, (response.status_code, response.mimetype)
        body = json.loads(response.get_data())
        if oauth:
            assert isinstance(body.get("error"), str), body
        else:
            assert body.get("status") == str(response.status_code), body


def assert_local_redirect(response) -> None:
    if response.status_code in (301, 302, 303, 307, 308):
        netloc = urlsplit(response.headers["Location"]).netloc
        assert netloc in ("", "localhost"), response.headers["Location"]


def csrf_choice():
    """A valid CSRF token from the page (mostly), none, or junk."""
    return mostly(st.just(REAL), st.one_of(st.none(), TEXT))


# --- Hosted pages (CSRF-protected forms) ------------------------------------------------------


def test_login_form(world):
    app = world.app

    @FUZZ
    @given(
        username=either("anna", "ANNA ", "bert", ""),
        password=either(PASSWORD, ""),
        next_path=st.one_of(st.none(), either("/", "//evil.example", "/authorize?x=1")),
        token=csrf_choice(),
        extra=EXTRA_FIELDS,
    )
    def run(username, password, next_path, token, extra):
        browser = app.test_client()
        page = browser.get("/login")
        data = {**extra, "username": username, "password": password}
        if next_path is not None:
            data["next"] = next_path
        data.pop("csrf_token", None)
        if token is not None:
            data["csrf_token"] = csrf_token(page.text) if token == REAL else token
        response = browser.post("/login", data=data)
        assert_no_server_error(response)
        if token != REAL:
            assert response.status_code == 400
        if response.status_code == 303:
            assert response.headers["Location"].endswith("/pin")

    run()
    world.assert_intact()


def test_login_and_pin_raw_bodies(world):
    """Raw, possibly non-UTF-8 bodies behind a valid CSRF token, under any content type."""
    app = world.app

    @FUZZ
    @given(
        path=st.sampled_from(["/login", "/pin", "/logout", world.bert_link]),
        body=RAW,
        content_type=content_types(
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=zz",
            "application/json",
            "text/plain; charset=latin-1",
        ),
    )
    def run(path, body, content_type):
        browser = app.test_client()
        token = csrf_token(browser.get("/login").text).encode()
        data = b"csrf_token=" + token + b"&username=anna&pin=" + body + b"&password=" + body
        response = browser.post(path, data=data, content_type=content_type)
        assert_no_server_error(response)

    run()
    world.assert_intact()


def test_pin_form(world):
    app, outbox = world.app, world.outbox

    @FUZZ
    @given(
        pending=mostly(st.just(True), st.just(False)),
        pin=st.one_of(st.just(REAL), st.text("0123456789", max_size=8), TEXT),
        resend=mostly(st.none(), TEXT),
        token=csrf_choice(),
        extra=EXTRA_FIELDS,
    )
    def run(pending, pin, resend, token, extra):
        browser = app.test_client()
        if pending:
            response = post_form(browser, "/login", {"username": "anna", "password": PASSWORD})
            assert response.status_code == 303, response.text
            page = browser.get("/pin")
        else:
            page = browser.get("/login")
        data = {**extra, "pin": outbox.last_pin() if pin == REAL else pin}
        data.pop("csrf_token", None)
        data.pop("resend", None)
        if resend is not None:
            data["resend"] = resend
        if token is not None:
            data["csrf_token"] = csrf_token(page.text) if token == REAL else token
        response = browser.post("/pin", data=data)
        assert_no_server_error(response)
        if token != REAL:
            assert response.status_code == 400
        elif not pending:
            assert response.status_code == 410
        assert_local_redirect(response)

    run()
    world.assert_intact()


def test_activation_links_and_passwords(world):
    app = world.app
    real_token = world.bert_link.rsplit("/", 1)[1]

    @FUZZ
    @given(
        link=mostly(
            st.just(REAL),
            st.one_of(
                TEXT,
                st.binary(min_size=1, max_size=40),
                # The real token, cut or with junk appended.
                st.integers(0, len(real_token)).map(lambda n: real_token[:n]),
                TEXT.map(lambda junk: real_token + junk),
            ),
            ratio=1,
        ),
        password=either(PASSWORD, "short", ""),
        confirm=mostly(st.just(REAL), TEXT),
        token=csrf_choice(),
    )
    def run(link, password, confirm, token):
        browser = app.test_client()
        path = world.bert_link if link == REAL else "/activate/" + quote(link, safe="")
        page = browser.get(path)
        assert_no_server_error(page)
        data = {"password": password, "password_confirm": password if confirm == REAL else confirm}
        if token is not None:
            source = page if page.status_code == 200 else browser.get("/login")
            data["csrf_token"] = csrf_token(source.text) if token == REAL else token
        response = browser.post(path, data=data)
        assert_no_server_error(response)
        if response.status_code == 303:
            # The real link (also when the junk appended to it was empty) and token.
            assert path == world.bert_link and token == REAL
            assert response.headers["Location"].endswith("/pin")

    run()
    world.assert_intact()


def test_logout_form(world):
    app = world.app

    @FUZZ
    @given(signed_in=st.booleans(), token=csrf_choice(), extra=EXTRA_FIELDS)
    def run(signed_in, token, extra):
        browser = world.signed_in() if signed_in else app.test_client()
        page = browser.get("/logout")
        data = dict(extra)
        data.pop("csrf_token", None)
        if token is not None:
            source = page if 'name="csrf_token"' in page.text else browser.get("/login")
            data["csrf_token"] = csrf_token(source.text) if token == REAL else token
        response = browser.post("/logout", data=data)
        assert_no_server_error(response)
        if token == REAL:
            assert response.status_code == 303
            assert response.headers["Location"].endswith("/logged-out")
        else:
            assert response.status_code == 400

    run()
    world.assert_intact()


def test_language_switch(world):
    browser = world.app.test_client()

    @FUZZ
    @given(
        code=st.one_of(either("de", "en", "xx"), st.binary(max_size=10)),
        next_path=st.one_of(
            st.none(),
            either("/", "//evil.example/", "/\\evil.example", "https://evil.example/", "/login"),
        ),
    )
    def run(code, next_path):
        query = {} if next_path is None else {"next": next_path}
        response = browser.get("/language/" + quote(code, safe=""), query_string=query)
        assert_no_server_error(response)
        assert_local_redirect(response)

    run()
    world.assert_intact()


# --- OpenID Connect ---------------------------------------------------------------------------


# What RFC 6749 4.1.2.1 allows in an error_description (%x20-21 / %x23-5B / %x5D-7E). The
# main property keeps response_type to it; any other response_type has a test of its own
# (test_authorize_response_type_outside_rfc6749_charset_is_no_500).
ERROR_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')


def authorize_alternatives(world) -> dict:
    return {
        "response_type": st.one_of(
            st.sampled_from(["code", "token", "code id_token", "none"]),
            st.text(ERROR_CHARS, max_size=30),
        ),
        "client_id": either(world.client_id, world.service_id),
        "redirect_uri": either(REDIRECT_URI, REDIRECT_URI + "/x", "https://evil.example/cb"),
        "scope": either(
            "openid", "openid profile email phone entitlements offline_access", "scim", "profile"
        ),
        "code_challenge": either(CHALLENGE, "short"),
        "code_challenge_method": either("S256", "plain"),
        "prompt": either("none", "login", "consent", "none login"),
        "max_age": either("0", "60", "9" * 30, "-1", "1e3"),
        "ui_locales": either("en", "de-DE fr", "xx"),
        "id_token_hint": either(world.id_token, "a.b.c", world.access_token),
        "login_hint": TEXT,
        "response_mode": either("query", "fragment", "form_post"),
        "request": TEXT,
        "claims": TEXT,
    }


def test_authorize(world):
    app = world.app
    anonymous = app.test_client()

    @FUZZ
    @given(
        params=mutated(world.authorize_params(), authorize_alternatives(world)),
        extra=EXTRA_FIELDS,
        signed_in=st.booleans(),
        method=st.sampled_from(["GET", "POST"]),
    )
    def run(params, extra, signed_in, method):
        values = {**extra, **params}
        browser = world.browser if signed_in else anonymous
        if method == "GET":
            response = browser.get("/authorize", query_string=values)
        else:
            response = browser.post("/authorize", data=values)
        assert_no_server_error(response)
        if response.status_code in (302, 303):
            location = response.headers["Location"]
            if urlsplit(location).netloc not in ("", "localhost"):
                # Back to the relying party only at its registered redirect URI.
                assert values.get("redirect_uri") == REDIRECT_URI, location
                assert location.startswith(REDIRECT_URI + "?"), location

    run()
    # The signed-in browser was never signed out by junk, and still gets a code.
    assert world.code(world.browser)
    world.assert_intact()


@pytest.mark.parametrize("response_type", ["\x1f", '"', "\\", "é", "code\x00"])
def test_authorize_response_type_outside_rfc6749_charset_is_no_500(world, response_type):
    response = world.app.test_client().get(
        "/authorize",
        query_string={
            "client_id": world.client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": response_type,
        },
    )
    assert response.status_code < 500
    if response.status_code == 302:
        location = response.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?error=unsupported_response_type")


def client_auth(world, choice: str, junk: str, grant_type=None) -> tuple[dict, dict]:
    """(headers, form fields) for one way of (not) authenticating the client."""
    if choice == "valid":
        choice = "service" if grant_type == "client_credentials" else "basic"
    if choice == "basic":
        return basic(world.client_id, world.client_secret), {}
    if choice == "post":
        return {}, {"client_id": world.client_id, "client_secret": world.client_secret}
    if choice == "service":
        return basic(world.service_id, world.service_secret), {}
    if choice == "wrong secret":
        return basic(world.client_id, junk), {}
    if choice == "junk basic":
        return basic(junk, junk), {}
    if choice == "junk post":
        return {}, {"client_id": junk, "client_secret": junk}
    if choice == "public":
        return {}, {"client_id": world.client_id}
    if choice == "header":
        return {"Authorization": junk}, {}
    return {}, {}


AUTH_CHOICES = mostly(
    st.sampled_from(["valid", "basic", "post"]),
    st.sampled_from(
        ["service", "wrong secret", "junk basic", "junk post", "public", "header", "none"]
    ),
    ratio=1,
)
JUNK_CREDENTIAL = st.one_of(HEADER, st.sampled_from(["Basic", "Basic !!!", "Basic Og==", ""]))


def test_token_endpoint(world):
    app = world.app
    grants = {
        "authorization_code": {
            "grant_type": "authorization_code",
            "code": REAL,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        },
        "refresh_token": {"grant_type": "refresh_token", "refresh_token": REAL},
        "client_credentials": {"grant_type": "client_credentials", "scope": "scim"},
    }
    alternatives = {
        "grant_type": either(*grants, "password", "implicit"),
        "code": either(REAL, "0" * 48),
        "redirect_uri": either(REDIRECT_URI + "/x", "https://evil.example/cb"),
        "code_verifier": either("x" * 43, VERIFIER + "x", "v" * 200),
        "refresh_token": either(REAL, world.access_token),
        "scope": either("openid", "scim", "openid offline_access", "profile", ""),
    }

    @FUZZ
    @given(
        fields=st.sampled_from(sorted(grants)).flatmap(
            lambda grant: mutated(grants[grant], alternatives)
        ),
        auth=AUTH_CHOICES,
        junk=JUNK_CREDENTIAL,
        extra=EXTRA_FIELDS,
    )
    def run(fields, auth, junk, extra):
        headers, credentials = client_auth(world, auth, junk, fields.get("grant_type"))
        data = {**extra, **fields, **credentials}
        if data.get("code") == REAL:
            data["code"] = world.code(world.browser)
        if data.get("refresh_token") == REAL:
            data["refresh_token"] = world.refresh_token
        response = app.test_client().post("/token", data=data, headers=headers)
        assert_protocol_answer(response)
        if response.status_code == 200:
            assert "access_token" in response.json
            assert response.headers["Cache-Control"] == "no-store"
            # A rotated refresh token is the one to fuzz with next.
            world.refresh_token = response.json.get("refresh_token", world.refresh_token)

    run()
    world.assert_intact()


def test_token_endpoint_raw_bodies(world):
    app = world.app

    @FUZZ
    @given(
        body=RAW,
        content_type=content_types("application/x-www-form-urlencoded", "application/json"),
        auth=AUTH_CHOICES,
        junk=JUNK_CREDENTIAL,
    )
    def run(body, content_type, auth, junk):
        headers, _ = client_auth(world, auth, junk)
        data = b"grant_type=authorization_code&code=" + body
        for path in ("/token", "/revoke", "/introspect"):
            response = app.test_client().post(
                path, data=data, content_type=content_type, headers=headers
            )
            assert_protocol_answer(response)

    run()
    world.assert_intact()


def test_userinfo(world):
    app = world.app

    @FUZZ
    @given(
        header=st.one_of(
            st.none(),
            HEADER,
            HEADER.map(lambda value: "Bearer " + value),
            st.sampled_from(["Bearer", "bearer REAL", "Bearer  REAL  ", "Basic REAL"]),
        ),
        form_token=st.one_of(st.none(), either("REAL")),
        method=st.sampled_from(["GET", "POST"]),
    )
    def run(header, form_token, method):
        headers = {}
        if header is not None:
            headers["Authorization"] = header.replace("REAL", world.access_token)
        data = None
        if form_token is not None and method == "POST":
            data = {"access_token": form_token.replace("REAL", world.access_token)}
        response = app.test_client().open("/userinfo", method=method, headers=headers, data=data)
        assert_protocol_answer(response)
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

    run()
    world.assert_intact()


@pytest.mark.parametrize("path", ["/revoke", "/introspect"])
def test_revoke_and_introspect(world, path):
    app = world.app
    valid = {"token": "ACCESS", "token_type_hint": "access_token"}
    alternatives = {
        "token": either("ACCESS", "REFRESH", "ID", "a.b.c"),
        "token_type_hint": either("access_token", "refresh_token", "id_token"),
    }

    @FUZZ
    @given(
        fields=mutated(valid, alternatives),
        auth=AUTH_CHOICES,
        junk=JUNK_CREDENTIAL,
        extra=EXTRA_FIELDS,
    )
    def run(fields, auth, junk, extra):
        headers, credentials = client_auth(world, auth, junk)
        data = {**extra, **fields, **credentials}
        real = {"ACCESS": world.access_token, "REFRESH": world.refresh_token, "ID": world.id_token}
        if data.get("token") in real:
            data["token"] = real[data["token"]]
        response = app.test_client().post(path, data=data, headers=headers)
        assert_protocol_answer(response)
        if response.status_code == 200 and path == "/introspect":
            assert isinstance(response.json.get("active"), bool)

    run()
    world.assert_intact()


def test_end_session(world):
    app = world.app
    valid = {
        "id_token_hint": world.id_token,
        "client_id": world.client_id,
        "post_logout_redirect_uri": POST_LOGOUT_URI,
        "state": "s",
    }
    alternatives = {
        "id_token_hint": either(world.id_token, "a.b.c", world.access_token),
        "client_id": either(world.service_id),
        "post_logout_redirect_uri": either(POST_LOGOUT_URI + "/x", "https://evil.example/"),
        "ui_locales": TEXT,
    }

    @FUZZ
    @given(
        params=mutated(valid, alternatives),
        # Nobody, another session, or the very session the ID token names (logged out once).
        browser=st.sampled_from(["anonymous", "other", "own"]),
        method=st.sampled_from(["GET", "POST"]),
    )
    def run(params, browser, method):
        http = {
            "anonymous": app.test_client,
            "other": world.signed_in,
            "own": lambda: world.browser,
        }[browser]()
        if method == "GET":
            response = http.get("/end_session", query_string=params)
        else:
            response = http.post("/end_session", data=params)
        assert_no_server_error(response)
        if response.status_code in (302, 303):
            location = response.headers["Location"]
            if urlsplit(location).netloc not in ("", "localhost"):
                assert params.get("post_logout_redirect_uri") == POST_LOGOUT_URI, location
                assert location.startswith(POST_LOGOUT_URI), location

    run()
    world.assert_intact()


# --- SCIM -------------------------------------------------------------------------------------


def scim_user(username="carla", **changes) -> dict:
    return {
        "schemas": [SCIM_USER, CUSTOMER],
        "externalId": f"order-{username}",
        "userName": username,
        "displayName": username.title(),
        "active": True,
        "emails": [{"value": f"{username}@example.com", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+4915112345670", "type": "mobile"}],
        "entitlements": [{"value": "cloud.phone"}],
        CUSTOMER: {"customerNumber": "K-100200"},
        **changes,
    }


SCIM_ALTERNATIVES = {
    "schemas": st.one_of(st.just([SCIM_USER]), st.just([CUSTOMER]), JSON_VALUE),
    "userName": st.one_of(st.sampled_from(["carla", "anna", "dora", "Carla "]), JSON_VALUE),
    "externalId": st.one_of(st.sampled_from(["order-anna", "order-dora"]), JSON_VALUE),
    "displayName": JSON_VALUE,
    "active": st.one_of(st.booleans(), JSON_VALUE),
    "emails": st.one_of(
        st.lists(st.fixed_dictionaries({"value": either("dora@example.com", "no-at")})),
        JSON_VALUE,
    ),
    "phoneNumbers": st.one_of(
        st.lists(st.fixed_dictionaries({"value": either("+4915112345671", "0151", "+1")})),
        JSON_VALUE,
    ),
    "entitlements": st.one_of(
        st.lists(st.fixed_dictionaries({"value": either("cloud.phone")})), JSON_VALUE
    ),
    CUSTOMER: st.one_of(st.fixed_dictionaries({"customerNumber": TEXT}), JSON_VALUE),
    "name": JSON_VALUE,
    "password": JSON_VALUE,
    "id": JSON_VALUE,
    "meta": JSON_VALUE,
}
SCIM_BODY = mostly(
    # A valid user (Carla, who exists, or Dora, who does not) with fields changed; JSON junk;
    # raw bytes.
    st.sampled_from(["carla", "dora"])
    .flatmap(lambda name: mutated(scim_user(name), SCIM_ALTERNATIVES))
    .map(json.dumps),
    st.one_of(JSON_VALUE.map(json.dumps), RAW),
)
PATCH_OPERATION = mutated(
    {"op": "replace", "path": "displayName", "value": "Carla C."},
    {
        "op": either("add", "replace", "remove", "Replace"),
        "path": either(
            "active",
            "displayName",
            "emails",
            'emails[type eq "work"].value',
            "phoneNumbers",
            'phoneNumbers[type eq "mobile"].value',
            "userName",
            f"{CUSTOMER}:customerNumber",
            "entitlements",
            "externalId",
            "id",
            "meta.version",
            "name.givenName",
            "schemas",
        ),
        "value": JSON_VALUE,
    },
)
PATCH_BODY = mostly(
    mutated(
        {
            "schemas": [SCIM_PATCH],
            "Operations": [{"op": "replace", "path": "active", "value": True}],
        },
        {
            "schemas": JSON_VALUE,
            "Operations": st.one_of(st.lists(PATCH_OPERATION, max_size=3), JSON_VALUE),
        },
    ).map(json.dumps),
    st.one_of(JSON_VALUE.map(json.dumps), RAW),
)
SCIM_CONTENT_TYPE = mostly(
    st.sampled_from(["application/scim+json", "application/json"]),
    content_types("text/plain", "application/x-www-form-urlencoded"),
)
# A user id in the path: never empty and never with a slash, else no route matches (see
# test_scim_unrouted_paths_answer_scim_json for those).
SUBJECT = TEXT.map(lambda junk: junk.replace("/", "_") or "x")


def test_scim_users(world):
    app = world.app
    token = world.service_token()
    http = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def scim(method, path, body=None, content_type="application/scim+json", headers=None):
        return http.open(
            "/scim/v2" + path,
            method=method,
            data=body,
            content_type=content_type,
            headers={**auth, **(headers or {})},
        )

    created = scim("POST", "/Users", json.dumps(scim_user()))
    assert created.status_code == 201, created.text
    subject = created.json["id"]

    def state():
        user = scim("GET", f"/Users/{subject}")
        listed = scim("GET", "/Users")
        return user.status_code, user.get_data(), listed.json["totalResults"]

    @FUZZ
    @given(
        method=st.sampled_from(["POST", "PUT", "PATCH"]),
        target=mostly(st.just(REAL), SUBJECT),
        body=SCIM_BODY,
        patch=PATCH_BODY,
        content_type=SCIM_CONTENT_TYPE,
        if_match=mostly(st.none(), st.one_of(st.just("*"), st.just("ETAG"), HEADER)),
    )
    def run(method, target, body, patch, content_type, if_match):
        before = state()
        headers = {}
        if if_match is not None:
            etag = scim("GET", f"/Users/{subject}").headers.get("ETag", "")
            headers["If-Match"] = if_match.replace("ETAG", etag)
        path = "/Users"
        if method != "POST":
            path += "/" + (subject if target == REAL else quote(target, safe=""))
        response = scim(method, path, patch if method == "PATCH" else body, content_type, headers)
        assert_protocol_answer(response, oauth=False)
        assert response.mimetype == "application/scim+json", response.mimetype
        if response.status_code >= 400:
            assert state() == before, "a refused SCIM request changed something"

    run()
    world.assert_intact()


def test_scim_without_valid_token(world):
    app = world.app

    @FUZZ
    @given(
        header=st.one_of(
            st.none(),
            HEADER,
            HEADER.map(lambda value: "Bearer " + value),
            st.sampled_from(["Bearer ACCESS", "Bearer ID"]),
        ),
        route=st.sampled_from(
            [
                ("GET", ""),
                ("POST", ""),
                ("GET", "/x"),
                ("PUT", "/x"),
                ("PATCH", "/x"),
                ("DELETE", "/x"),
            ]
        ),
        subject=SUBJECT,
        body=RAW,
    )
    def run(header, route, subject, body):
        headers = {}
        if header is not None:
            # A person's access token or ID token is no service token.
            real = header.replace("ACCESS", world.access_token).replace("ID", world.id_token)
            headers["Authorization"] = real
        method, tail = route
        path = "/scim/v2/Users" + tail.replace("x", quote(subject, safe=""))
        response = app.test_client().open(
            path,
            method=method,
            data=body,
            headers=headers,
            content_type="application/scim+json",
        )
        assert_protocol_answer(response, oauth=False)
        assert response.status_code == 401

    run()
    world.assert_intact()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/scim/v2/Users"),
        ("PATCH", "/scim/v2/Users"),
        ("DELETE", "/scim/v2/Users"),
        ("PUT", "/scim/v2/Users/"),
        ("GET", "/scim/v2/Users/a/b"),
        ("GET", "/scim/v2/Nope"),
    ],
)
def test_scim_unrouted_paths_answer_scim_json(world, method, path):
    response = world.app.test_client().open(
        path,
        method=method,
        headers={"Authorization": f"Bearer {world.service_token()}"},
        data=b"{}",
        content_type="application/scim+json",
    )
    assert 400 <= response.status_code < 500
    assert response.mimetype == "application/scim+json", response.mimetype
