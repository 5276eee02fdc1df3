"""Networks: the client networks that rate limits are keyed by, and the addresses that the
identity provider's own requests (back-channel logout) must never reach.

Client networks, two of them. The counters that hold an attacker back (limit_network_of) take a
/24 (IPv4) or a /48 (IPv6): one attacker rarely has addresses in more than one, so they hold
against address hopping; not a /64, since a /48 of 65,536 /64s is what a tunnel broker hands
anyone for free and many hosters give a server. What spares a person or names her place
(network_of: the home network that a lock set from elsewhere does not bind, the network a page
or mail shows) takes a /24 or a /64, a line's own: a /48 may be a whole provider's pool, and
an attacker there must not count as at home.

Forbidden targets: a URI that an operator registers, or a DNS answer for its name, must not
turn the identity provider into a client of its own link or of the cloud's metadata service,
which hands out the machine's credentials to whoever asks from it."""

import contextlib
import ipaddress
import re
import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util import connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# What an IPv4 address in any of the spellings resolvers accept is made of.
NUMERIC_HOST = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)

# Link-local networks (where AWS, GCP, Azure, Oracle and OpenStack serve metadata, at
# 169.254.169.254) and metadata addresses outside them.
FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS, over IPv6
        "100.100.100.200/32",  # Alibaba Cloud
    )
)
# Names of metadata services (they resolve only inside their cloud, so a check of what they
# resolve to here proves nothing).
METADATA_NAMES = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
)
# IPv6 addresses that carry an IPv4 address which a connection to them reaches: IPv4-mapped
# (::ffff:a.b.c.d, handled by ipv4_mapped), IPv4-compatible (::a.b.c.d) and NAT64, with the
# RFC 6052 prefix lengths at which the IPv4 address may sit: the well-known prefix is a /96;
# the local-use one (RFC 8215) is a /48 that a site divides into a NAT64 prefix of its choice.
IPV4_CARRYING_NETWORKS = {
    ipaddress.ip_network("::/96"): (96,),
    ipaddress.ip_network("64:ff9b::/96"): (96,),
    ipaddress.ip_network("64:ff9b:1::/48"): (48, 56, 64, 96),
}


def network_of(address: str | None) -> str:
    """The client's own network (/24, /64): where she is at home, what pages show."""
    return _network(address, ipv6_prefix=64)


def limit_network_of(address: str | None) -> str:
    """The network that rate limits count by (/24, /48)."""
    return _network(address, ipv6_prefix=48)


def _network(address: str | None, *, ipv6_prefix: int) -> str:
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    prefix = 24 if parsed.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


class ForbiddenTarget(Exception):
    """A host that is, or resolves to, a link-local or cloud metadata address."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses that a connection to host:port tries, as the system resolver gives them
    (numeric spellings such as 2852039166 or 0xa9fea9fe included). Tests replace it."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def addresses_reached(address: IPAddress) -> list[IPAddress]:
    """The address, and for an IPv6 address that carries an IPv4 one, that IPv4 address (at
    each position where it may sit): what a connection to the address may end up at."""
    reached = [address]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            reached.append(address.ipv4_mapped)
        for carrier, prefix_lengths in IPV4_CARRYING_NETWORKS.items():
            if address in carrier:
                reached += [embedded_ipv4(address, length) for length in prefix_lengths]
    return reached


def forbidden_address(address: str) -> str | None:
    """The link-local or metadata address that a connection to `address` reaches, if it
    reaches one (for an IPv6 address that carries an IPv4 one, that IPv4 address)."""
    for candidate in addresses_reached(ipaddress.ip_address(address)):
        for network in FORBIDDEN_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return str(candidate)
    return None


def embedded_ipv4(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address that an RFC 6052 address with a prefix of that length carries: the 32
    bits after the prefix, leaving out bits 64 to 71 (which are always zero there)."""
    value = int(address)
    if prefix_length == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    without_bits_64_to_71 = ((value >> 64) << 56) | (value & ((1 << 56) - 1))
    return ipaddress.IPv4Address((without_bits_64_to_71 >> (88 - prefix_length)) & 0xFFFFFFFF)


def _refuse(host: str, address: str) -> None:
    reached = forbidden_address(address)
    if reached is None:
        return
    where = "is" if reached == host else f"reaches {reached},"
    raise ForbiddenTarget(f"{host} {where} a link-local or cloud metadata address")


def literal_address(host: str) -> IPAddress | None:
    """The address that host spells, if it is one: IPv6 with a zone (fe80::1%eth0), which
    may not resolve here, and every IPv4 spelling that resolvers accept (2852039166,
    0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518, 127.1, 0), whatever resolver is in use;
    with one trailing dot too, which resolvers take as the same (169.254.169.254.)."""
    host = host.removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Only all-numeric (or hex) hosts: inet_aton also takes "1.2.3.4 anything" for 1.2.3.4.
    if not NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses of host:port, none of them forbidden; ForbiddenTarget if one is (a name
    with one good and one bad address is refused: either may be the one connected to), and
    socket.gaierror when the name does not resolve."""
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise ForbiddenTarget(f"{host} is a cloud metadata service")
    literal = literal_address(host)
    if literal is not None:
        _refuse(host, str(literal))
    addresses = resolve(host, port)
    for address in addresses:
        _refuse(host, address)
    return addresses


def check_target(host: str, port: int) -> None:
    """ForbiddenTarget for a host that is, or now resolves to, a forbidden address. A name
    that does not resolve (yet) passes: the connection checks again (see GuardedConnection)."""
    with contextlib.suppress(socket.gaierror, UnicodeError):
        checked_addresses(host, port)


class RefusedConnection(NewConnectionError):
    """The connection was not even tried: its target is forbidden (`refusal` says why)."""

    def __init__(self, conn, refusal: str):
        super().__init__(conn, refusal)
        self.refusal = refusal


class GuardedConnection(HTTPConnection):
    """Connects only to addresses that checked_addresses let pass, and to exactly those (no
    second lookup): a name that resolved well when its URI was registered and resolves to the
    metadata service now (DNS rebinding) is refused before any byte goes out."""

    def _new_conn(self) -> socket.socket:
        try:
            addresses = checked_addresses(self._dns_host, self.port)
        except ForbiddenTarget as refused:
            raise RefusedConnection(self, str(refused)) from None
        except socket.gaierror as error:
            # Failed as urllib3 fails on names it cannot resolve, never by falling back on its
            # own lookup: a name whose DNS fails the checked query and answers the next one with
            # the metadata address would get through unchecked (DNS rebinding).
            raise NameResolutionError(self.host, self, error) from error
        except UnicodeError:
            raise LocationParseError(f"'{self.host}', label empty or too long") from None
        for address in addresses:
            try:
                return connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as error:
                failure = ConnectTimeoutError(self, f"Connection to {self.host} timed out: {error}")
            except OSError as error:
                failure = NewConnectionError(self, f"Failed to establish a new connection: {error}")
        raise failure


class GuardedHTTPSConnection(GuardedConnection, HTTPSConnection):
    """TLS on a GuardedConnection; the certificate is still checked against the name."""


class _GuardedPool(HTTPConnectionPool):
    ConnectionCls = GuardedConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedPool, "https": _GuardedHTTPSPool}

    def send(self, request, **kwargs):
        # Directly: through a proxy, the address checked would be the proxy's.
        kwargs["proxies"] = {}
        return super().send(request, **kwargs)


def guarded_session() -> requests.Session:
    """HTTP(S) for requests to URIs that operators registered: every connection goes through
    GuardedConnection, directly, never through a proxy from the environment (HTTPS_PROXY).
    The rest of the environment still counts (REQUESTS_CA_BUNDLE for a private CA)."""
    session = requests.Session()
    adapter = _GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def refusal_of(error: requests.RequestException) -> str | None:
    """Why a guarded connection refused its target, if that is what failed the request
    (requests wraps urllib3's error in a MaxRetryError)."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return reason.refusal if isinstance(reason, RefusedConnection) else None
