"""Events that one capability announces and the ones above it act on, so that the lower one
never imports the higher: an account that is disabled (accounts) ends its logins (authn), and
a session that ends (authn) ends its tokens and tells its relying parties (oidc).

A handler runs inside the caller's database transaction and returns what must wait until that
transaction is committed (trying a logout token at once, say) as a list of callables; `fire` gathers
them into one `AfterCommit`, which the caller runs once it has committed. `create_app` is the
only place that connects handlers to events."""

from collections.abc import Callable

from flask import Flask, current_app

Handler = Callable[..., list[Callable[[], object]] | None]


class AfterCommit(list):
    """What to do once the change is committed, in order. Empty when there is nothing."""

    def run(self) -> None:
        for action in self:
            action()


def connect(app: Flask, event: str, handler: Handler) -> None:
    app.extensions.setdefault("idp.hooks", {}).setdefault(event, []).append(handler)


def fire(event: str, *args, **kwargs) -> AfterCommit:
    after_commit = AfterCommit()
    for handler in current_app.extensions.get("idp.hooks", {}).get(event, ()):
        after_commit.extend(handler(*args, **kwargs) or ())
    return after_commit
