"""The OpenID Connect provider's tables: clients, grants, tokens, signing keys and the
authorization requests that wait for a login."""

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import User
from idp.authn.models import TransactionState
from idp.platform.columns import UTCDateTime, utcnow
from idp.platform.extensions import db


class PendingAuthorization(db.Model):
    """An authorization request that waits for the login it asked for (see
    services.authorizations). Bound to one browser: its flow cookie holds the random handle,
    this row its digest."""

    __tablename__ = "pending_authorizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle_digest: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    # Names the very request (every parameter), so that only it can complete this row.
    # Indexed: a request that comes again keeps the step-up binding of its earlier rows.
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    # The request's parameters as [name, value] pairs, to send the browser back with them.
    params: Mapped[list] = mapped_column(JSON)
    # Only a login after this moment satisfies the request.
    login_asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A step-up: the account signed in when the request came; only it may confirm.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=TransactionState.PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Indexed: expired rows are cleared as new ones come.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped["Client"] = relationship()
    user: Mapped[User | None] = relationship()


class Client(db.Model):
    """A relying party registered by an operator. Its secret is high-entropy and random, so a
    SHA-256 digest protects it as well as a slow hash would, at a fraction of the cost."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # None for a public client (a browser or native app): it proves itself by PKCE alone.
    secret_digest: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    # ES256 unless an older relying party can only verify RS256.
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(8), default="ES256")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "authorization_code" for a relying party (refresh included); "client_credentials" for a
    # service such as the ordering system, which acts for itself and never signs anyone in.
    grant_type: Mapped[str] = mapped_column(
        String(32), default="authorization_code", server_default="authorization_code"
    )
    # What a client_credentials client may ask for ("scim").
    scope: Mapped[str | None] = mapped_column(Text)
    # A relying party that admits only customers with this product ("cloud.phone").
    required_entitlement: Mapped[str | None] = mapped_column(String(64))
    # "jwt": RFC 9068 access tokens, which an API can check by signature alone. "opaque": a
    # random value that says nothing to whoever holds it, checked at userinfo and
    # introspection; for relying parties that never read their access tokens.
    access_token_format: Mapped[str] = mapped_column(String(8), default="jwt", server_default="jwt")


class Grant(db.Model):
    """One authorization: the code issued at /authorize and the family of tokens that its
    redemption and every refresh descend from. Revoking the grant revokes the whole family."""

    __tablename__ = "oauth_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The login session the grant came from: back-channel logout finds its clients here.
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    sid: Mapped[str] = mapped_column(String(43))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list] = mapped_column(JSON)
    acr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    code_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    code_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[Client] = relationship()
    user: Mapped[User] = relationship()


class TokenKind(enum.StrEnum):
    ACCESS = "access_token"
    REFRESH = "refresh_token"


class Token(db.Model):
    """An access or refresh token of a grant, stored as the SHA-256 digest of what the client
    holds. A refresh token is used once: its successor replaces it (rotation)."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    grant: Mapped[Grant] = relationship()


class SigningKey(db.Model):
    """A key that signs ID and access tokens. Published in JWKS from creation, it signs only
    from `active_at` (so relying parties have fetched it first) and stays published until
    what it signed has expired."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(8))
    public_jwk: Mapped[dict] = mapped_column(JSON)
    # The private key as PEM, encrypted under a key derived from SECRET_KEY (Fernet).
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    active_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LogoutDeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


class LogoutDelivery(db.Model):
    """A back-channel logout that a relying party is owed (idp.oidc.logout_outbox). Written in
    the transaction that ends the session, so that the logout survives a relying party that is
    down and an instance that stops; the token itself is signed afresh at every try and never
    stored. The session's `sid` and subject are copied: the token needs them after the session
    and its account are gone."""

    __tablename__ = "logout_deliveries"
    # One delivery per relying party and session, however often the session is ended.
    __table_args__ = (
        db.UniqueConstraint("client_id", "sid", name="uq_logout_delivery_rp_sid"),
        # What the deliverers look for: pending rows that are due.
        db.Index("ix_logout_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(43))
    subject: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=LogoutDeliveryState.PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the next try is due. A deliverer that claims the row moves it past the end of its
    # try (a lease), so that another finds it again only when the first has died.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    # Why the last try failed (an HTTP status or an exception's name; never the token).
    last_problem: Mapped[str | None] = mapped_column(String(120))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[Client] = relationship()
