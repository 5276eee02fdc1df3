"""The password step of a login. It yields only a pending transaction, never a session: that
comes when the second factor (idp.authn.factors) confirms it."""

from contextlib import suppress
from datetime import datetime

from idp import audit
from idp.accounts import users
from idp.accounts.models import User, UserState
from idp.accounts.passwords import hashing
from idp.authn import factors, lockout, sessions, transactions
from idp.authn.models import AuthTransaction, Session, TransactionPurpose
from idp.errors import HashingBusy, LoginThrottled
from idp.platform import metrics
from idp.platform.hooks import AfterCommit
from idp.platform.network import network_of
from idp.platform.ratelimit import login_attempt_free_at, take_login_attempt


def check_password(username: str, password: str, now: datetime, ip: str | None) -> User | None:
    """The user when the password is right and the account may log in; else None, or
    LoginThrottled when the attempt was not even checked. Unknown users, disabled or locked
    accounts and wrong passwords cost one argon2 verify each, so that neither the answer nor
    its timing tells them apart."""
    user = users.find_by_username(username) if username else None
    # Counted for every name, existing or not, so that the limit tells nothing either.
    attempt_allowed = take_login_attempt(users.username_key(username), ip)
    claimed = usable = False
    if attempt_allowed and user is not None and user.state == UserState.ACTIVE:
        claimed = lockout.claim_password_attempt(user.id, now)
        # Past the hard limit not even the home network may try: guesses from there would go
        # uncounted, without end.
        usable = claimed or (
            not lockout.password_hard_locked(user.id)
            and lockout.is_home_network(user, network_of(ip), now)
        )
    try:
        ok = hashing().verify(user.password_hash if usable else None, password)
    except HashingBusy:
        # Not checked, so not a try: a burst of other people's logins must not count against
        # the owner (a lock that this claim set stays, on the safe side). Only an attempt this
        # request counted is given back: past a lock, from the home network, none was.
        if claimed:
            lockout.give_back_password_attempt(user.id, now)
        raise
    if usable:
        lockout.settle_password_attempt(user, ok, now)
    if ok and hashing().needs_rehash(user.password_hash):
        with suppress(HashingBusy):  # the stronger hash can wait for the next login
            user.password_hash = hashing().hash(password)
    if not attempt_allowed:
        audit.record("login.failed", now=now, actor="user", user=user, ip=ip, reason="throttled")
        metrics.LOGINS.labels(result="throttled").inc()
        raise LoginThrottled(login_attempt_free_at(users.username_key(username), ip))
    if not ok:
        audit.record(
            "login.failed",
            now=now,
            actor="user",
            user=user,
            ip=ip,
            reason="password" if usable else "unusable-account",
        )
        metrics.LOGINS.labels(result="password_rejected").inc()
        return None
    return user


def begin(
    user: User,
    now: datetime,
    ip: str | None,
    return_to: str | None,
    purpose: str = TransactionPurpose.LOGIN,
) -> tuple[AuthTransaction, str]:
    """Starts the second-factor step of a login (or of a step-up, whose SMS says it confirms
    an action) with the factor the account goes to (factors.for_login); its page is the
    factor's `step_endpoint`. Raises PinsLocked, sending nothing, while wrong answers lock the
    account; SendError when the SMS fails (the caller rolls back). Within the cooldown of the
    account's last PIN the step starts without one, and its page says when one can be asked
    for."""
    factor = factors.for_login(user)
    transaction, token = transactions.start(
        user, purpose, now, return_to=return_to, factor=factor.name
    )
    factor.start(transaction, now, ip)
    return transaction, token


def complete(
    transaction: AuthTransaction,
    now: datetime,
    ip: str | None,
    user_agent: str | None,
    current: Session | None,
) -> tuple[Session, str, AfterCommit]:
    """The session after the factor confirmed the login, its new cookie token, and what to do
    once committed (tell the relying parties of a session that ended). A fresh login in a live
    session of the same user (prompt=login, max_age, step-up) renews that session, so single
    sign-on and
    logout still span every relying party; a session of another user ends."""
    user = transaction.user
    factor = factors.of(transaction)
    amr = factors.amr(factor, transaction)
    lockout.reset(user)
    user.last_login_at = now
    after_commit = AfterCommit()
    if current is not None and current.user_id == user.id:
        token = sessions.reauthenticate(current, amr=amr, now=now)
        session = current
    else:
        if current is not None:
            after_commit = sessions.end(current, now)
        session, token = sessions.create(user, amr=amr, now=now, ip=ip, user_agent=user_agent)
    audit.record("login.succeeded", now=now, actor="user", user=user, ip=ip, sid=session.sid)
    metrics.LOGINS.labels(result="ok").inc()
    metrics.count_second_factor(factor.name, paid=factor.paid_per_challenge)
    return session, token, after_commit


def log_out(session: Session, now: datetime, *, actor: str, ip: str | None) -> AfterCommit:
    """Ends the session (and its tokens, telling its relying parties once committed) and puts
    the logout on record. The caller commits, then runs what is returned."""
    after_commit = sessions.end(session, now)
    audit.record("logout", now=now, actor=actor, user=session.user, ip=ip, sid=session.sid)
    return after_commit
