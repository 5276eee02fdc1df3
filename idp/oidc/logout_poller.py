"""A small thread per gunicorn worker that tries the logouts that are due again
(idp.oidc.logout_outbox), every LOGOUT_POLL_INTERVAL seconds. Several workers and instances
poll the same table: the claim keeps them from taking the same row.

Started from gunicorn's post_worker_init (idp.gunicorn_conf), in the worker process after the
fork, where a thread of the master would not survive; never in a command line run, which
delivers with `idp logout deliver` if at all. A daemon: a worker that stops leaves its claimed
rows to come due again when their lease ends."""

import random
import threading

from flask import Flask

from idp.oidc import logout_outbox
from idp.platform import clock


class LogoutPoller:
    def __init__(self, app: Flask, interval: float):
        self.app = app
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="logout-poller", daemon=True)

    def start(self) -> "LogoutPoller":
        self.thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        self.stopped.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        # Spread: workers started together would otherwise look at the same moment, every time.
        while not self.stopped.wait(self.interval * random.uniform(0.5, 1.5)):  # noqa: S311
            self.poll_once()

    def poll_once(self) -> None:
        with self.app.app_context():
            try:
                while not self.stopped.is_set():
                    tried, _ = logout_outbox.deliver_due(clock.now())
                    if tried < logout_outbox.CLAIM_BATCH:
                        break
                logout_outbox.forget_finished(clock.now())
            except Exception:  # the database away for a moment, say: the next look retries
                self.app.logger.exception("logout poller: delivery failed")


def start(app: Flask) -> LogoutPoller | None:
    interval = app.config["LOGOUT_POLL_INTERVAL"]
    if not interval:
        return None
    poller = LogoutPoller(app, interval).start()
    app.extensions["idp.logout_poller"] = poller
    return poller
