"""Work that a request starts and does not wait for: it runs in a small pool of threads of
this process, with a copy of the request's context, after the answer is on its way. A page
whose answer must not tell what the work found (the forgotten password) answers at once and
takes equally long for every input."""

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

from flask import Flask, copy_current_request_context, current_app

# A flood of requests must not pile up work (and memory) without end: beyond this many waiting
# jobs, new ones are dropped and logged. The rate limits of the pages keep it far away.
MAX_PENDING = 200
WORKERS = 2


class Background:
    def __init__(self, app: Flask):
        self.logger = app.logger
        self.lock = threading.Lock()
        self.pending: set[Future] = set()
        self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="background")

    def submit(self, job: Callable[[], object], name: str) -> Future | None:
        with self.lock:
            if len(self.pending) >= MAX_PENDING:
                self.logger.error("background work dropped, too much waiting: %s", name)
                return None
            future = self.executor.submit(self._run, job, name)
            self.pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _run(self, job: Callable[[], object], name: str) -> None:
        try:
            job()
        except Exception:
            # Nobody waits for it: whatever goes wrong is logged, never lost silently.
            self.logger.exception("background work failed: %s", name)

    def _forget(self, future: Future) -> None:
        with self.lock:
            self.pending.discard(future)

    def wait(self, timeout: float = 10) -> None:
        """Until the work submitted so far is done (the tests wait for it)."""
        with self.lock:
            futures = list(self.pending)
        wait_for(futures, timeout)


def init_app(app: Flask) -> None:
    app.extensions["idp.background"] = Background(app)


def of(app: Flask) -> Background:
    return app.extensions["idp.background"]


def after_response(job: Callable[..., object], *args) -> Future | None:
    """Runs job(*args) in the background within a copy of this request's context (its own
    application context, and with it its own database session)."""

    @copy_current_request_context
    def in_context():
        job(*args)

    return of(current_app).submit(in_context, getattr(job, "__qualname__", repr(job)))
