"""Tables only. Behaviour lives in idp/services."""

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text, TypeDecorator, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.extensions import db


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: the same on SQLite (which drops time zones) and on
    PostgreSQL, so that comparisons with an aware `now` never fail."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_subject() -> str:
    return str(uuid.uuid4())


class UserState(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    DISABLED = "disabled"


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Opaque and stable: the OIDC `sub`. Never the username, which a person may want changed.
    subject: Mapped[str] = mapped_column(String(36), unique=True, default=new_subject)
    username: Mapped[str] = mapped_column(String(64))
    # NFKC + casefold of the username: "Anna" and "anna" are one account.
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    # The display name; and the parts of the person's name, as provisioning (SCIM `name`) sends.
    name: Mapped[str | None] = mapped_column(String(200))
    formatted_name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    # None: none chosen (provisioning may leave it out); mails and SMS use the default language.
    locale: Mapped[str | None] = mapped_column(String(8), default="de")
    state: Mapped[str] = mapped_column(String(16), default=UserState.INVITED)
    # Of a disabled account: when, by whom ("cli:<os user>", "client:<client_id>") and why.
    # Only the side that disabled it enables it again: provisioning never lifts an operator's.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_by: Mapped[str | None] = mapped_column(String(128))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_passwords: Mapped[int] = mapped_column(default=0)
    failed_pins: Mapped[int] = mapped_column(default=0)
    # Wrong passwords lock the password step, wrong PINs the PIN step: apart, so that strangers
    # guessing passwords cannot stop the owner's PIN, and each page can say which lock holds.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pins_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the account's last PIN SMS went out, for whichever of its logins or activations: the
    # wait before the next one runs from it, so that starting over is no way around it. Cleared
    # when a PIN is confirmed.
    last_pin_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The ordering system's own id of the account (SCIM externalId). Unique, so that a retried
    # or concurrent provisioning request cannot create the account twice.
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    customer_number: Mapped[str | None] = mapped_column(String(64))
    # Products under contract ("cloud.phone"): the `entitlements` claim and client policies.
    entitlements: Mapped[list] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # Deprovisioned by the ordering system: gone for SCIM, kept (disabled) for the audit trail.
    deprovisioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When name, addresses and contracts of a deprovisioned account were erased.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InvitationPurpose(enum.StrEnum):
    ACTIVATION = "activation"
    RESET = "reset"


class InvitationState(enum.StrEnum):
    CREATED = "created"
    SENT = "sent"
    OPENED = "opened"
    ACTIVATED = "activated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Invitation(db.Model):
    """A personal set-password link (activation or reset); its nonce makes it single-use."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=InvitationState.CREATED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class TransactionPurpose(enum.StrEnum):
    ACTIVATION = "activation"
    LOGIN = "login"
    # A new login within a live session that a relying party asked for to confirm an action
    # (a booking): the same steps as a login, its SMS says what it confirms.
    STEP_UP = "step_up"


class TransactionState(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class AuthTransaction(db.Model):
    """A login or activation whose first step passed and whose SMS PIN is pending. Bound to one
    browser: the flow cookie holds a random token, this row its hash."""

    __tablename__ = "auth_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=TransactionState.PENDING)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(
        ForeignKey("invitations.id", ondelete="CASCADE")
    )
    # Activation: the new password's hash, stored only once the PIN is confirmed.
    pending_password_hash: Mapped[str | None] = mapped_column(String(255))
    # Where the browser goes when the login completes (a path on this server).
    return_to: Mapped[str | None] = mapped_column(Text)
    pin_attempts: Mapped[int] = mapped_column(default=0)
    pins_sent: Mapped[int] = mapped_column(default=0)
    last_pin_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
    invitation: Mapped[Invitation | None] = relationship()


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


class PinChallenge(db.Model):
    """One SMS PIN sent for a transaction; only the newest unexpired one counts."""

    __tablename__ = "pin_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("auth_transactions.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    # HMAC of the PIN under a server key: six digits hashed plainly would fall to a table scan.
    pin_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Session(db.Model):
    """A login session (single sign-on). The cookie holds a random token, this row its hash."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Public session id for OIDC (`sid` claim, back-channel logout); not a credential.
    sid: Mapped[str] = mapped_column(String(43), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship()


class AuditEvent(db.Model):
    """What happened, to whom, by whom, from where. Rows are only ever added."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # Who acted: "user", "cli:<os user>", "client:<client_id>", "system".
    actor: Mapped[str] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(45))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    # Hash chain: each row holds the hash of the one before, so that a changed, removed or
    # inserted row shows (`idp audit verify`). Users are never deleted, so user_id stays put.
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(db.Model):
    """The one row that ends the audit chain. Appending locks it, so appends are serialized
    and the chain has no forks; it also shows when the newest rows were cut off."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    events: Mapped[int] = mapped_column(default=0)
    last_event_id: Mapped[int | None] = mapped_column()
    last_hash: Mapped[str | None] = mapped_column(String(64))


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
    access_token_format: Mapped[str] = mapped_column(
        String(8), default="jwt", server_default="jwt"
    )


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
