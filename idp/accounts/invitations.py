"""Set-password links: the activation of a new account and the reset of a password. Both lead
through the same page, and both end with an SMS PIN to the phone on record."""

from datetime import datetime, timedelta

from flask import current_app, render_template
from flask_babel import force_locale, gettext
from sqlalchemy import select, update

from idp import audit
from idp.accounts import links, users
from idp.accounts.models import Invitation, InvitationPurpose, InvitationState, User, UserState
from idp.errors import LinkProblem
from idp.platform.extensions import db
from idp.platform.secrets import digest, new_token, same
from idp.senders import Mail, send_mail

OPEN_STATES = (InvitationState.CREATED, InvitationState.SENT, InvitationState.OPENED)


def revoke_open_invitations(user: User, now: datetime) -> int:
    result = db.session.execute(
        update(Invitation)
        .where(Invitation.user_id == user.id, Invitation.state.in_(OPEN_STATES))
        .values(state=InvitationState.REVOKED, ended_at=now)
    )
    return result.rowcount


def issue(
    user: User, purpose: InvitationPurpose, now: datetime, *, lifetime: int | None = None
) -> tuple[Invitation, str]:
    """A new link for the user, valid for `lifetime` seconds (INVITATION_LIFETIME unless
    said); any older one dies with it. Returns the row and the URL."""
    revoke_open_invitations(user, now)
    nonce = new_token()
    invitation = Invitation(
        user_id=user.id,
        purpose=purpose,
        nonce_hash=digest(nonce),
        state=InvitationState.CREATED,
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime or current_app.config["INVITATION_LIFETIME"]),
    )
    db.session.add(invitation)
    db.session.flush()
    token = links.sign(links.SET_PASSWORD_SALT, [invitation.id, nonce])
    return invitation, links.absolute_url(f"/activate/{token}")


def issue_and_send(
    user: User,
    purpose: InvitationPurpose,
    now: datetime,
    *,
    actor: str,
    event: str,
    lifetime: int | None = None,
    ip: str | None = None,
) -> Invitation:
    """A new link by mail (older links die), with its audit event. Raises SendError when the
    mail cannot be sent; the caller rolls back and nothing has changed."""
    invitation, url = issue(user, purpose, now, lifetime=lifetime)
    # The mail first: recording the event locks the audit chain head until the commit, and
    # every audited action of the cluster would wait for the mail server meanwhile.
    send(invitation, url, now)
    audit.record(event, now=now, actor=actor, user=user, ip=ip)
    return invitation


def send(invitation: Invitation, url: str, now: datetime) -> None:
    """Sends the mail; raises SendError and changes nothing when it cannot be sent."""
    user = invitation.user
    config = current_app.config
    context = {
        "user": user,
        "name": users.full_name(user),
        "url": url,
        "portal_url": config["PORTAL_URL"],
        "product": config["PRODUCT_NAME"],
        "purpose": invitation.purpose,
        # Whole minutes, from the row: an operator's link lasts days, a forgotten password's
        # an hour.
        "valid_minutes": int((invitation.expires_at - now).total_seconds()) // 60,
    }
    with force_locale(users.language(user)):
        if invitation.purpose == InvitationPurpose.ACTIVATION:
            subject = gettext("Your access to %(product)s", product=config["PRODUCT_NAME"])
        else:
            subject = gettext("Set a new password for %(product)s", product=config["PRODUCT_NAME"])
        text = render_template("mail/set_password.txt", **context)
        html = render_template("mail/set_password.html", **context)
    send_mail(Mail(to=user.email, subject=subject, text=text, html=html))
    invitation.state = InvitationState.SENT
    invitation.sent_at = now


def resolve(token: str, now: datetime) -> Invitation:
    """The open invitation behind a link, or LinkProblem. Never consumes the link."""
    config = current_app.config
    # The signature outlives no link; each row's own expiry then says when its link ends.
    max_age = max(config["INVITATION_LIFETIME"], config["PASSWORD_RESET_LIFETIME"])
    try:
        payload = links.unsign(links.SET_PASSWORD_SALT, token, max_age=max_age)
    except links.LinkExpired:
        raise LinkProblem("expired") from None
    except links.LinkInvalid:
        raise LinkProblem("invalid") from None
    if len(payload) != 2 or not isinstance(payload[0], int) or not isinstance(payload[1], str):
        raise LinkProblem("invalid")
    invitation_id, nonce = payload
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or not same(invitation.nonce_hash, digest(nonce)):
        raise LinkProblem("invalid")
    if invitation.user.state == UserState.DISABLED:
        raise LinkProblem("invalid")
    if invitation.state in (InvitationState.ACTIVATED, InvitationState.REVOKED):
        raise LinkProblem("used")
    if invitation.state == InvitationState.EXPIRED or invitation.expires_at <= now:
        if invitation.state != InvitationState.EXPIRED:
            invitation.state = InvitationState.EXPIRED
            invitation.ended_at = now
            db.session.commit()
        raise LinkProblem("expired")
    return invitation


def mark_opened(invitation: Invitation, now: datetime) -> None:
    if invitation.state in (InvitationState.CREATED, InvitationState.SENT):
        invitation.state = InvitationState.OPENED
        invitation.opened_at = now


def consume(invitation_id: int, now: datetime) -> None:
    """Marks the link used. LinkProblem when it can no longer be: a parallel request used it
    first ("used"), or it expired while its PIN step was open ("expired")."""
    result = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation_id,
            Invitation.state.in_(OPEN_STATES),
            Invitation.expires_at > now,
        )
        .values(state=InvitationState.ACTIVATED, activated_at=now, ended_at=now)
    )
    if result.rowcount == 1:
        return
    state = db.session.scalar(select(Invitation.state).where(Invitation.id == invitation_id))
    expired = state in OPEN_STATES or state == InvitationState.EXPIRED
    raise LinkProblem("expired" if expired else "used")


def latest_for(user: User) -> Invitation | None:
    return db.session.scalar(
        select(Invitation).where(Invitation.user_id == user.id).order_by(Invitation.id.desc())
    )
