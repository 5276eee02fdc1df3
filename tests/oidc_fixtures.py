"""A live identity provider on 127.0.0.1, a browser that signs in through its hosted pages, and
relying parties built on Authlib's own OAuth 2.0 client."""

import base64
import html
import json
import re
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet
from werkzeug.serving import make_server

from idp.demo.servers import free_port
from idp.platform import network
from tests.conftest import PASSWORD, activate
from tests.servers import HOST

SCOPE = "openid profile email phone entitlements offline_access"


@dataclass
class LiveIdp:
    app: object
    issuer: str

    def url(self, path: str) -> str:
        return self.issuer + path

    def discovery(self) -> dict:
        return requests.get(self.url("/.well-known/openid-configuration"), timeout=5).json()

    def create_client(self, *extra: str, redirect_uri: str | None = None, **kw) -> dict:
        args = ["clients", "create", kw.get("name", "Portal"), "--json"]
        args += ["--redirect-uri", redirect_uri or f"http://{HOST}:9/callback", *extra]
        result = self.app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@contextmanager
def serving(make_app, prepare=None):
    """An app served by werkzeug in a thread on a free port; `prepare(app)` runs before the
    first request (to register what a test adds)."""
    port = free_port()
    live = make_app(ISSUER=f"http://{HOST}:{port}")
    if prepare is not None:
        prepare(live)
    server = make_server(HOST, port, live, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveIdp(live, f"http://{HOST}:{port}")
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def idp(app, make_app):
    """The app served by werkzeug in a thread; `app` (the conftest's) cleans the tables."""
    with serving(make_app) as live:
        yield live


@pytest.fixture
def user(idp, outbox):
    """Anna, activated through her link and SMS PIN."""
    activate(idp.app, idp.app.test_client(), outbox)
    return "anna"


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


class Browser:
    """A person's browser: follows the IdP's redirects, stops at the relying party."""

    def __init__(self, idp: LiveIdp, outbox):
        self.idp = idp
        self.outbox = outbox
        self.http = requests.Session()
        self.logins = 0

    def visit(self, url: str) -> requests.Response:
        """Follows redirects on the IdP; returns the first response that leaves it (or a page).
        Signs in with password and SMS PIN whenever the IdP asks."""
        response = self.http.get(url, allow_redirects=False, timeout=10)
        while True:
            if response.is_redirect:
                target = urljoin(response.url, response.headers["Location"])
                if not target.startswith(self.idp.issuer):
                    return response
                response = self.http.get(target, allow_redirects=False, timeout=10)
            elif urlsplit(response.url).path == "/login" and response.status_code == 200:
                response = self._sign_in(response)
            else:
                return response

    def _sign_in(self, page: requests.Response) -> requests.Response:
        self.logins += 1
        next_path = re.search(r'name="next" value="([^"]+)"', page.text)
        form = {"csrf_token": _csrf(page.text), "username": "anna", "password": PASSWORD}
        if next_path:
            form["next"] = html.unescape(next_path.group(1))
        response = self.http.post(
            self.idp.url("/login"), data=form, allow_redirects=False, timeout=10
        )
        assert response.status_code == 303, response.text
        pin_page = self.http.get(self.idp.url("/pin"), timeout=10)
        return self.http.post(
            self.idp.url("/pin"),
            data={"csrf_token": _csrf(pin_page.text), "pin": self.outbox.last_pin()},
            allow_redirects=False,
            timeout=10,
        )


@pytest.fixture
def browser(idp, outbox, user):
    return Browser(idp, outbox)


@dataclass
class RelyingParty:
    """One relying party, driven through Authlib's OAuth2Session."""

    idp: LiveIdp
    client_id: str
    client_secret: str | None
    redirect_uri: str
    auth_method: str = "client_secret_basic"
    last: dict = field(default_factory=dict)

    def session(self) -> OAuth2Session:
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=SCOPE,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=self.auth_method,
        )

    def authorization_url(self, **params) -> str:
        verifier = generate_token(48)
        nonce = generate_token(20)
        url, state = self.session().create_authorization_url(
            self.idp.url("/authorize"), code_verifier=verifier, nonce=nonce, **params
        )
        self.last = {"verifier": verifier, "nonce": nonce, "state": state}
        return url

    def callback_params(self, response: requests.Response) -> dict:
        assert response.is_redirect, (response.status_code, response.text[:500])
        location = response.headers["Location"]
        assert location.startswith(self.redirect_uri), location
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def sign_in(self, browser: Browser, **params) -> dict:
        """The whole code flow; returns the token response."""
        response = browser.visit(self.authorization_url(**params))
        callback = response.headers["Location"]
        params = self.callback_params(response)
        assert params["state"] == self.last["state"]
        assert params["iss"] == self.idp.issuer
        return self.redeem(callback)

    def redeem(self, callback: str) -> dict:
        return self.session().fetch_token(
            self.idp.url("/token"),
            authorization_response=callback,
            code_verifier=self.last["verifier"],
            state=self.last["state"],
        )

    def verify_id_token(self, id_token: str) -> dict:
        keys = KeySet.import_key_set(requests.get(self.idp.url("/jwks.json"), timeout=5).json())
        header = json.loads(_b64(id_token.split(".")[0]))
        claims = jwt.decode(id_token, keys, algorithms=[header["alg"]]).claims
        assert claims["iss"] == self.idp.issuer
        assert claims["aud"] == self.client_id
        return claims


def _b64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@pytest.fixture
def make_rp(idp):
    def build(*extra, public=False, auth_method=None, port=None, name="Portal"):
        redirect_uri = f"http://{HOST}:{port or free_port()}/callback"
        flags = ["--public"] if public else []
        created = idp.create_client(*flags, *extra, redirect_uri=redirect_uri, name=name)
        method = auth_method or ("none" if public else "client_secret_basic")
        return RelyingParty(
            idp, created["client_id"], created["client_secret"], redirect_uri, method
        )

    return build


@pytest.fixture
def rp(make_rp):
    return make_rp()


class BackchannelReceiver:
    """A relying party's back-channel logout endpoint on 127.0.0.1."""

    def __init__(self):
        self.tokens: list[str] = []
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = parse_qs(self.rfile.read(length).decode())
                receiver.tokens += body.get("logout_token", [])
                receiver.received.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.uri = f"http://{HOST}:{self.server.server_address[1]}/backchannel-logout"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, timeout: float = 10) -> str:
        assert self.received.wait(timeout), "no logout token arrived"
        return self.tokens[-1]

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def backchannel():
    receiver = BackchannelReceiver()
    yield receiver
    receiver.stop()


class Resolver:
    """network.resolve for a test: the answers it sets for names (names under .test, or one it
    repoints, such as localhost), no such name for other .test names, and the system's
    resolver for the rest (addresses, which need no DNS)."""

    def __init__(self, system):
        self.answers: dict[str, list[str]] = {}
        self.system = system

    def __call__(self, host: str, port: int) -> list[str]:
        if host in self.answers:
            return list(self.answers[host])
        if host.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.system(host, port)


@pytest.fixture
def resolver(monkeypatch) -> Resolver:
    fake = Resolver(network.resolve)
    monkeypatch.setattr(network, "resolve", fake)
    return fake
