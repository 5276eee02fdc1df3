"""Real local servers for the senders: SMTP (aiosmtpd, STARTTLS or implicit TLS) and an HTTPS
fake of Vonage's SMS API, both with certificates from a throwaway CA (trustme). They listen on
127.0.0.1 only."""

import email
import email.policy
import json
import logging
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import trustme
from aiosmtpd.controller import Controller

# The one free-port helper; here too, for the tests that import it with the servers.
from idp.demo.servers import free_port

HOST = "127.0.0.1"

# aiosmtpd logs every line it receives; the tests look for message bodies in the product's logs.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass
class Certificates:
    """A CA the senders are told to trust, and a server certificate for 127.0.0.1 from it."""

    ca: trustme.CA
    server: trustme.LeafCert
    ca_file: Path

    @classmethod
    def create(cls, directory: Path) -> "Certificates":
        ca = trustme.CA()
        server = ca.issue_cert(HOST, "localhost")
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(ca, server, ca_file)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        return context


# --- SMTP -------------------------------------------------------------------------------------


class Mailbox:
    """What the SMTP server received: one parsed message per delivery."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        # Whether each message travelled over TLS (STARTTLS or implicit).
        self.encrypted: list[bool] = []
        self.fail_with: str | None = None  # an SMTP reply such as "554 rejected"
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.fail_with:
            return self.fail_with
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 OK"

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.envelopes.clear()
            self.encrypted.clear()
        self.fail_with = None


SMTP_USERNAME = "idp-mailer"
SMTP_PASSWORD = "smtp: submission password 4f7Q"


class Authenticator:
    """Accepts SMTP_USERNAME with SMTP_PASSWORD; keeps every attempt's login name, mechanism,
    and whether the connection was encrypted when the credentials crossed it."""

    def __init__(self):
        self.attempts: list[tuple[str, str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.attempts.append((login, mechanism, session.ssl is not None))
        return AuthResult(success=(login, password) == (SMTP_USERNAME, SMTP_PASSWORD))


class SmtpServer:
    """aiosmtpd on 127.0.0.1: `starttls` (plain, STARTTLS offered), `implicit` (TLS from the
    first byte, like port 465), or `auth` (STARTTLS, and mail only after AUTH, which the server
    offers only once TLS is up, as a submission server on port 587 does)."""

    def __init__(self, certificates: Certificates, mode: str):
        self.mode = mode
        self.mailbox = Mailbox()
        self.port = free_port()
        self.authenticator = Authenticator()
        context = certificates.server_context()
        settings = {"ssl_context" if mode == "implicit" else "tls_context": context}
        if mode == "auth":
            settings |= {
                "authenticator": self.authenticator,
                "auth_required": True,
                "auth_require_tls": True,
            }
        self.controller = Controller(self.mailbox, hostname=HOST, port=self.port, **settings)

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def settings(self, ca_file: Path) -> dict:
        """App settings that send through this server."""
        settings = {
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": HOST,
            "MAIL_PORT": self.port,
            "MAIL_USE_TLS": self.mode != "implicit",
            "MAIL_USE_SSL": self.mode == "implicit",
            "MAIL_CA_FILE": str(ca_file),
            "MAIL_TIMEOUT": 5,
            "MAIL_DEFAULT_SENDER": "e:service <no-reply@example.com>",
        }
        if self.mode == "auth":
            settings |= {"MAIL_USERNAME": SMTP_USERNAME, "MAIL_PASSWORD": SMTP_PASSWORD}
        return settings


# --- Vonage SMS API ---------------------------------------------------------------------------


@dataclass
class VonageState:
    """What the fake answers and what it received."""

    # "ok", a Vonage status such as "2" (missing parameters) or "9" (quota exceeded),
    # "http500", "hang" (answers only after the test is over), "trickle" (answers at once,
    # a byte every half second: no read waits long, the whole answer takes a minute) or "late"
    # (accepts it, the answer a byte every 10 ms: in all about 3 s).
    mode: str = "ok"
    # Seconds before any answer (a slow provider); the message counts as received at once.
    delay: float = 0.0
    received: list[dict] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def texts(self) -> list[str]:
        return [request["text"] for request in self.received]


class VonageHandler(BaseHTTPRequestHandler):
    server: "VonageServer"

    def log_message(self, format, *args):
        pass  # quiet: the test output is the place for failures, not request lines

    def do_POST(self):
        state = self.server.state
        if self.path.split("?")[0] != "/sms/json":
            self.answer(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        form["authorization"] = self.headers.get("Authorization")
        with state.lock:
            state.received.append(form)
        if state.delay:
            state.released.wait(state.delay)
        if state.mode == "hang":
            state.released.wait(30)
            return
        if state.mode == "http500":
            self.answer(500, {"type": "about:blank", "title": "Internal Server Error"})
            return
        if state.mode == "trickle":
            self.trickle(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 10)
            return
        status = "0" if state.mode in ("ok", "late") else state.mode
        message = {"to": form.get("to"), "status": status}
        if status == "0":
            message.update(
                {
                    "message-id": uuid.uuid4().hex[:16].upper(),
                    "remaining-balance": "15.53590000",
                    "message-price": "0.0333",
                    "network": "26202",
                }
            )
        else:
            message["error-text"] = {"2": "Missing from param", "9": "Quota Exceeded"}.get(
                status, "Rejected"
            )
        body = {"message-count": "1", "messages": [message]}
        if state.mode == "late":
            data = json.dumps(body).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            self.trickle(head + data, every=0.01)
            return
        self.answer(200, body)

    def trickle(self, data: bytes, every: float = 0.5) -> None:
        for index in range(len(data)):
            if self.server.state.released.wait(every):
                return
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class VonageServer(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1 that answers POST /sms/json like Vonage's SMS API."""

    daemon_threads = True

    def __init__(self, certificates: Certificates):
        super().__init__((HOST, 0), VonageHandler)
        self.state = VonageState()
        self.socket = certificates.server_context().wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "VonageServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.state.released.set()
        self.shutdown()
        self.server_close()

    def reset(self) -> None:
        self.state.released.set()
        self.state = VonageState()

    def settings(self) -> dict:
        return {
            "SMS_BACKEND": "vonage",
            "VONAGE_API_KEY": "testkey",
            "VONAGE_API_SECRET": "testsecret",
            "VONAGE_REST_HOST": f"{HOST}:{self.port}",
            "SMS_TIMEOUT": 1,
        }
