"""Clients registered by operators: relying parties (exact redirect URIs, public clients
without a secret) and services that act for themselves with client credentials (the ordering
system). Secrets are shown once and kept as SHA-256 digests (a random 256-bit secret needs no
slow hash)."""

import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from idp import policy
from idp.accounts import entitlements
from idp.errors import UserError
from idp.oidc.models import Client
from idp.platform import network
from idp.platform.extensions import db
from idp.platform.secrets import digest, new_token, same
from idp.policy import SERVICE_SCOPES

LOOPBACK_NAMES = ("localhost",)
CODE_FLOW = "authorization_code"
CLIENT_CREDENTIALS = "client_credentials"
GRANT_TYPES = (CODE_FLOW, CLIENT_CREDENTIALS)
# Access tokens: RFC 9068 JWTs (the default), or opaque random values (see models.Client).
JWT, OPAQUE = "jwt", "opaque"
ACCESS_TOKEN_FORMATS = (JWT, OPAQUE)
# What a client_credentials client can be allowed: each scope opens one API and nothing else.


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_uri(uri: str, what: str) -> str:
    """An absolute https URL (http only on the loopback interface), without fragment or user
    info: what an authorization response may be sent to."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        raise UserError(f"invalid {what} {uri!r}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise UserError(f"invalid {what} {uri!r}: give an absolute https:// URL")
    if parts.scheme == "http" and not _is_loopback(host):
        raise UserError(f"invalid {what} {uri!r}: https is required except on loopback")
    if parts.fragment or "#" in uri:
        raise UserError(f"invalid {what} {uri!r}: no fragment allowed")
    if "@" in parts.netloc:
        raise UserError(f"invalid {what} {uri!r}: no user info allowed")
    if any(c.isspace() for c in uri):
        raise UserError(f"invalid {what} {uri!r}")
    return uri


def check_backchannel_uri(uri: str) -> str:
    """check_uri, and not a link-local or cloud metadata target, by address or by what its
    name resolves to now: the identity provider posts to it from inside its network. (Each
    delivery checks the address it connects to again: names change.)"""
    what = "back-channel logout URI"
    check_uri(uri, what)
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        network.check_target(parts.hostname, port)
    except network.ForbiddenTarget as refused:
        raise UserError(f"invalid {what} {uri!r}: {refused}") from None
    return uri


@dataclass(frozen=True)
class ClientSpec:
    """What an operator registers a client with (`idp clients create`)."""

    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    public: bool = False
    alg: str = policy.DEFAULT_ALG
    grant_type: str = CODE_FLOW
    scope: str | None = None
    required_entitlement: str | None = None
    access_token_format: str = JWT


def create(spec: ClientSpec, now: datetime) -> tuple[Client, str | None]:
    """The new client and its secret (None for a public client): the secret is never stored."""
    name = spec.name.strip()
    redirect_uris, post_logout_redirect_uris = spec.redirect_uris, spec.post_logout_redirect_uris
    backchannel_logout_uri, public, alg = spec.backchannel_logout_uri, spec.public, spec.alg
    grant_type, scope = spec.grant_type, spec.scope
    required_entitlement, access_token_format = spec.required_entitlement, spec.access_token_format
    if not name or len(name) > 200:
        raise UserError("a client needs a name of 1 to 200 characters")
    if grant_type == CLIENT_CREDENTIALS:
        _check_service_client(
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            backchannel_logout_uri=backchannel_logout_uri,
            public=public,
            scope=scope,
            required_entitlement=required_entitlement,
        )
        scope = " ".join(dict.fromkeys(scope.split()))
    elif grant_type == CODE_FLOW:
        if not redirect_uris:
            raise UserError("a client needs at least one --redirect-uri")
        if scope:
            raise UserError("--scope is for --grant client_credentials only")
        if required_entitlement is not None:
            entitlements.check_known([required_entitlement])
    else:
        raise UserError(f"unsupported grant {grant_type!r}: use one of {', '.join(GRANT_TYPES)}")
    if alg not in policy.ALGORITHMS:
        raise UserError(f"unsupported algorithm {alg!r}: use one of {', '.join(policy.ALGORITHMS)}")
    if grant_type == CLIENT_CREDENTIALS and access_token_format != JWT:
        # A service's token is checked by the API it calls, by signature (see scim).
        raise UserError("--access-token-format opaque is for relying parties, not services")
    if access_token_format not in ACCESS_TOKEN_FORMATS:
        raise UserError(
            f"unsupported access token format {access_token_format!r}: "
            f"use one of {', '.join(ACCESS_TOKEN_FORMATS)}"
        )
    secret = None if public else new_token()
    client = Client(
        client_id=secrets.token_urlsafe(18),
        name=name,
        secret_digest=None if secret is None else digest(secret),
        redirect_uris=[check_uri(uri, "redirect URI") for uri in redirect_uris],
        post_logout_redirect_uris=[
            check_uri(uri, "post-logout redirect URI") for uri in post_logout_redirect_uris
        ],
        backchannel_logout_uri=(
            check_backchannel_uri(backchannel_logout_uri) if backchannel_logout_uri else None
        ),
        id_token_signed_response_alg=alg,
        created_at=now,
        grant_type=grant_type,
        scope=scope,
        required_entitlement=required_entitlement,
        access_token_format=access_token_format,
    )
    db.session.add(client)
    db.session.flush()
    return client, secret


def _check_service_client(
    *,
    redirect_uris,
    post_logout_redirect_uris,
    backchannel_logout_uri,
    public,
    scope,
    required_entitlement,
) -> None:
    """A client_credentials client never sends a browser anywhere and must hold a secret."""
    if redirect_uris or post_logout_redirect_uris or backchannel_logout_uri:
        raise UserError("a client_credentials client takes no redirect or logout URIs")
    if public:
        raise UserError("a client_credentials client cannot be public: it needs a secret")
    if required_entitlement is not None:
        raise UserError("--require-entitlement is for clients that sign people in")
    requested = (scope or "").split()
    if not requested:
        raise UserError(f"a client_credentials client needs --scope ({', '.join(SERVICE_SCOPES)})")
    unknown = [value for value in requested if value not in SERVICE_SCOPES]
    if unknown:
        raise UserError(f"unknown scope {unknown[0]!r}: use one of {', '.join(SERVICE_SCOPES)}")


def find(client_id: str | None) -> Client | None:
    if not client_id or len(client_id) > 64:
        return None
    return db.session.scalar(select(Client).where(Client.client_id == client_id))


def get(client_id: str) -> Client:
    client = find(client_id)
    if client is None:
        raise UserError(f"no client {client_id!r}")
    return client


def all_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def is_public(client: Client) -> bool:
    return client.secret_digest is None


def signs_people_in(client: Client) -> bool:
    """A relying party (code flow); the others act for themselves with client credentials."""
    return client.grant_type == CODE_FLOW


def service_scopes(client: Client) -> list[str]:
    """What a client_credentials client may ask for; nothing for a relying party."""
    if client.grant_type != CLIENT_CREDENTIALS:
        return []
    return (client.scope or "").split()


def secret_matches(client: Client, secret: str | None) -> bool:
    if client.secret_digest is None or not secret:
        return False
    return same(client.secret_digest, digest(secret))


def _listed(uri: str | None, registered: list[str]) -> bool:
    """Exact string match: no prefixes, no normalisation, no wildcards."""
    return bool(uri) and any(same(uri, candidate) for candidate in registered)


def redirect_uri_registered(client: Client, uri: str | None) -> bool:
    return _listed(uri, client.redirect_uris)


def post_logout_uri_registered(client: Client, uri: str | None) -> bool:
    return _listed(uri, client.post_logout_redirect_uris)


def landing_uri(client: Client) -> str | None:
    """A page of the relying party to send a person to outside any protocol answer (the back
    button after a login): where it asked to have people land after a logout, else None."""
    return client.post_logout_redirect_uris[0] if client.post_logout_redirect_uris else None


def rotate_secret(client: Client, now: datetime) -> str:
    if is_public(client):
        raise UserError(f"client {client.client_id!r} is public: it has no secret")
    secret = new_token()
    client.secret_digest = digest(secret)
    client.secret_rotated_at = now
    return secret


def delete(client: Client) -> None:
    db.session.delete(client)
