"""The provider's side of a login's way back (idp.authn.way_back): the authorization requests
that /authorize sent this browser to log in for, kept server-side (idp.oidc.authorizations)
and named by handles in the browser's flow cookie, and the address that resumes each."""

from urllib.parse import unquote, urlsplit

from flask import current_app, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from idp.accounts.models import User
from idp.authn.models import TransactionState
from idp.authn.way_back import WayBack
from idp.authn.web import current_session
from idp.oidc import authorizations, clients
from idp.oidc.models import PendingAuthorization
from idp.platform import clock
from idp.platform.secrets import digest
from idp.platform.web import browser_authorizations

RESUME_ENDPOINT = "oidc.resume"


def resume_path(handle: str) -> str:
    return url_for(RESUME_ENDPOINT, handle=handle)


class WaitingRequest:
    """A pending authorization row as the login sees it (idp.authn.way_back.Waiting)."""

    def __init__(self, row: PendingAuthorization):
        self.row = row

    @property
    def client_name(self) -> str:
        return self.row.client.name

    @property
    def landing_uri(self) -> str | None:
        return clients.landing_uri(self.row.client)

    @property
    def is_pending(self) -> bool:
        return self.row.state == TransactionState.PENDING

    @property
    def step_up_user(self) -> User | None:
        return self.row.user

    @property
    def purpose(self) -> str | None:
        return authorizations.purpose(self.row)


def _handles_by_digest() -> dict[str, str]:
    return {digest(handle): handle for handle in browser_authorizations()}


class WaitingRequests:
    """idp.authn.way_back.Resolver over this browser's waiting authorization requests."""

    def resolve(self, path: str) -> WayBack | None:
        """The path is read as the browser and the URL map will read it, percent-decoded
        (`/authorize/resum%65/...` resumes too), and a resume address is written anew: the
        login form's step-up check and the redirect after the PIN must see one and the same
        request. A path that the URL map would redirect first (merged slashes) is refused, and
        so is a request that this browser does not hold."""
        try:
            endpoint, args = current_app.url_map.bind("").match(
                unquote(urlsplit(path).path), method="GET"
            )
        except RequestRedirect:
            return None
        except HTTPException:
            return WayBack(path)  # no page of ours, but nothing that resumes either
        if endpoint != RESUME_ENDPOINT:
            return WayBack(path)
        row = authorizations.find(args["handle"], browser_authorizations(), clock.now())
        if row is None:
            return None
        return WayBack(resume_path(args["handle"]), WaitingRequest(row))

    def newest_waiting(self) -> WayBack | None:
        row = authorizations.newest(browser_authorizations(), clock.now(), pending_only=True)
        if row is None:
            return None
        return WayBack(resume_path(_handles_by_digest()[row.handle_digest]), WaitingRequest(row))

    def back_to_completed(self) -> str | None:
        if current_session() is None:
            return None
        row = authorizations.newest(browser_authorizations(), clock.now(), pending_only=False)
        if row is None or row.state != TransactionState.COMPLETED:
            return None
        return resume_path(_handles_by_digest()[row.handle_digest])
