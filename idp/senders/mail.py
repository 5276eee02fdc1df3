"""Mail senders: smtp (production), console and file (development)."""

import re
import smtplib
import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from idp.errors import ConfigurationError, SendError
from idp.senders.messages import Mail
from idp.senders.outbox import FileOutbox, print_loudly


def build(config):
    backend = config["MAIL_BACKEND"]
    if backend == "smtp":
        return SmtpMailer(config)
    if backend == "console":
        return ConsoleMailer()
    if backend == "file":
        return FileMailer(config["OUTBOX_DIR"])
    raise ConfigurationError(f"IDP_MAIL_BACKEND must be smtp, console or file, not {backend!r}")


# `Name <address>`, where the name is everything before the angle brackets.
NAMED_ADDRESS = re.compile(r"\s*(?P<name>.*?)\s*<(?P<address>[^<>]*)>\s*")
# A display name the operator already wrote as an RFC 5322 quoted-string: "e:service".
QUOTED_NAME = re.compile(r'"(?P<text>(?:[^"\\]|\\.)*)"')


def sender_address(sender: str) -> Address:
    """IDP_MAIL_DEFAULT_SENDER as one mailbox. The display name is taken as written: a colon,
    comma or quote in it is part of the name, never RFC 5322 syntax (written raw into the
    header, `e:service <...>` would be a group named "e" without a mailbox)."""
    named = NAMED_ADDRESS.fullmatch(sender)
    name, address = (named["name"], named["address"]) if named else ("", sender.strip())
    quoted = QUOTED_NAME.fullmatch(name)
    if quoted:
        name = re.sub(r"\\(.)", r"\1", quoted["text"])
    try:
        return Address(display_name=name, addr_spec=address)
    except (ValueError, HeaderParseError):
        raise ConfigurationError(
            f"IDP_MAIL_DEFAULT_SENDER must be an address or Name <address>, not {sender!r}"
        ) from None


def to_email_message(message: Mail, sender: Address) -> EmailMessage:
    # Address objects, not strings: the header is then built with the name quoted or encoded
    # as it needs to be, whatever characters it has.
    email = EmailMessage()
    email["From"] = sender
    email["To"] = Address(addr_spec=message.to)
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid()
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text)
    if message.html:
        email.add_alternative(message.html, subtype="html")
    return email


class SmtpMailer:
    def __init__(self, config):
        self.host = config["MAIL_SERVER"]
        self.port = config["MAIL_PORT"]
        self.use_tls = config["MAIL_USE_TLS"]
        self.use_ssl = config["MAIL_USE_SSL"]
        self.username = config["MAIL_USERNAME"]
        self.password = config["MAIL_PASSWORD"]
        self.sender = sender_address(config["MAIL_DEFAULT_SENDER"])
        self.timeout = config["MAIL_TIMEOUT"]
        self.ca_file = config["MAIL_CA_FILE"]

    def _tls_context(self) -> ssl.SSLContext:
        # Verifying: the server's certificate must be valid for its host name.
        return ssl.create_default_context(cafile=self.ca_file)

    def _connect(self) -> smtplib.SMTP:
        if self.use_ssl:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._tls_context()
            )
        connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.use_tls:
            connection.starttls(context=self._tls_context())
        return connection

    def send(self, message: Mail) -> None:
        email = to_email_message(message, self.sender)
        try:
            with self._connect() as connection:
                if self.username:
                    connection.login(self.username, self.password or "")
                connection.send_message(email)
        except (OSError, smtplib.SMTPException) as error:
            # The error names the server's answer, never the message (it carries the link).
            raise SendError(f"SMTP delivery to {self.host}:{self.port} failed: {error!r}") from None


class ConsoleMailer:
    def send(self, message: Mail) -> None:
        print_loudly("mail", [f"To: {message.to}", f"Subject: {message.subject}", "", message.text])


class FileMailer:
    def __init__(self, directory: str):
        self.outbox = FileOutbox(directory, "mail")

    def send(self, message: Mail) -> None:
        try:
            self.outbox.write(message)
        except OSError as error:
            raise SendError(f"could not write to the outbox: {error}") from None
