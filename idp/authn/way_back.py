"""Where a login goes on to (its `next`): a page of this site, or the address that resumes a
relying party's authorization request that waits for this login. The waiting requests belong
to the provider (idp.oidc.way_back); the login knows them only as `Waiting`, through the
`Resolver` that create_app registers. Without one, a way back is a plain path."""

from typing import NamedTuple, Protocol

from flask import Flask, current_app

from idp.accounts.models import User
from idp.platform.web import safe_return_path


class Waiting(Protocol):
    """A relying party's request that waits for a login."""

    client_name: str
    # The relying party's own page: where a person goes who cannot sign in now.
    landing_uri: str | None
    # Still waiting: neither completed nor cancelled.
    is_pending: bool
    # The account that must confirm it when it is a step-up (a new login that the relying
    # party asked for within a live session), else None.
    step_up_user: User | None
    # What the login confirms, when the relying party said ("booking"), else None.
    purpose: str | None


class WayBack(NamedTuple):
    path: str
    waiting: Waiting | None = None


class Resolver(Protocol):
    def resolve(self, path: str) -> WayBack | None:
        """The way back of a path of this site, or None when it is refused (a resume address
        that this browser does not hold)."""

    def newest_waiting(self) -> WayBack | None:
        """The browser's newest request that waits for a login."""

    def back_to_completed(self) -> str | None:
        """After a login that went on to a relying party: the address that leads back there
        (the back button), while the session lives."""


class PlainPaths:
    """Without a provider: every safe path is a way back, and nothing waits."""

    def resolve(self, path: str) -> WayBack | None:
        return WayBack(path)

    def newest_waiting(self) -> WayBack | None:
        return None

    def back_to_completed(self) -> str | None:
        return None


def register(app: Flask, resolver: Resolver) -> None:
    app.extensions["idp.way_back"] = resolver


def _resolver() -> Resolver:
    return current_app.extensions.get("idp.way_back") or PlainPaths()


def of(path: str | None) -> WayBack | None:
    """Where a login with this `next` goes on to; None for a path that is no way back (another
    origin, or a resume address that this browser does not hold)."""
    path = safe_return_path(path)
    return _resolver().resolve(path) if path else None


def waiting() -> WayBack | None:
    """The browser's newest request that waits for a login. The login page offers it as a
    choice and never continues to it by itself: any page can send a browser to /authorize, and
    must not decide where the person's next login at the IdP goes."""
    return _resolver().newest_waiting()


def back_to_completed() -> str | None:
    return _resolver().back_to_completed()


def cancellable(way_back: WayBack | None) -> str | None:
    """The way back of a login that a relying party's request still waits for: the pages of
    that login offer to cancel it. None for any other login."""
    if way_back is None or way_back.waiting is None or not way_back.waiting.is_pending:
        return None
    return way_back.path


def step_up_user(way_back: WayBack | None) -> User | None:
    """The account that must confirm the request the login goes back to, when that is a
    step-up."""
    if way_back is None or way_back.waiting is None or not way_back.waiting.is_pending:
        return None
    return way_back.waiting.step_up_user
