"""gunicorn's threaded worker, taking new connections least-connections first.

gunicorn's workers accept from one shared socket, and whichever wakes first takes the
connection. Keep-alive connections then stay with that worker for good: a proxy's or a load
driver's eight connections, opened together, land five and three or six and two, and one worker
(one core, the interpreter lock being per process) serves most requests while the other idles.
Measured under gunicorn's own worker: refresh grants 567/s with the connections spread evenly,
457/s with 6 + 2, 276/s with all on one worker.

Here every worker publishes how many connections it holds in a small table shared by the
workers (created in the arbiter before they fork). A worker that sees another holding fewer
leaves a new connection to it for HANDOFF_SECONDS and takes it itself only if it is still
waiting then, so that a busy or stopped worker never holds a connection up for longer. The
worker with the fewest never waits. Everything else is gunicorn's gthread worker unchanged.
"""

import ctypes
import mmap
import os
import time

from gunicorn.workers.gthread import ThreadWorker

# Long enough for a worker whose threads hold the interpreter lock to wake and accept (the lock
# changes hands every 5 ms); short enough to go unnoticed on a connection's first request.
HANDOFF_SECONDS = 0.02
# How late after its hand-off a worker may wake (its main loop waits for the interpreter lock
# too) and still count a waiting connection as the one nobody took.
LATE_WAKE_SECONDS = 0.5
# More workers than any pod runs; a worker beyond the table still serves, only unbalanced.
SLOTS = 64


class _Slot(ctypes.Structure):
    # pid: 0 = free; the arbiter's pid = given to a worker that has not started yet.
    _fields_ = [("pid", ctypes.c_int), ("connections", ctypes.c_int)]


# An anonymous shared mapping made at import, which happens in the arbiter when gunicorn loads
# the worker class: every forked worker sees the same memory, and no file (a read-only root
# filesystem) or semaphore is needed.
_table = (_Slot * SLOTS).from_buffer(mmap.mmap(-1, ctypes.sizeof(_Slot * SLOTS)))


def _alive(pid: int) -> bool:
    """Whether `pid` may still be a worker: workers run as the arbiter's user, so a process
    of another user (a reused pid) is not one."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def forget_worker(worker) -> None:
    """In the arbiter, once a worker has exited (idp/gunicorn_conf.py's child_exit): its slot is
    free at once, even after a SIGKILL that left it no chance to free it itself."""
    slot = getattr(worker, "_slot", None)
    if slot is not None and _table[slot].pid == worker.pid:
        _table[slot].pid = 0


def _claim_slot() -> int | None:
    """In the arbiter, before the fork (one at a time, so without a lock): a free slot, or one of
    a worker that died without giving its slot back (killed)."""
    arbiter = os.getpid()
    for index, slot in enumerate(_table):
        if slot.pid == 0 or (slot.pid != arbiter and not _alive(slot.pid)):
            slot.pid, slot.connections = arbiter, 0
            return index
    return None


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker; new connections go to the worker holding the fewest."""

    _slot: int | None = None
    _held = 0  # connections this worker holds, mirrored into the shared table
    _handing_off_until = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # in the arbiter, before the fork
        self._slot = _claim_slot()

    @property
    def nr_conns(self) -> int:
        # gunicorn counts every connection in and out through this attribute, on the main loop.
        return self._held

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        self._held = value
        if self._slot is not None:
            _table[self._slot].connections = value

    def init_process(self):
        if self._slot is not None:  # claimed with no connections counted
            _table[self._slot].pid = os.getpid()
        try:
            super().init_process()  # runs the worker until it exits
        finally:
            self._leave_table()

    def _leave_table(self) -> None:
        # The slot may go to a new worker at once: write nothing to it from here on.
        if self._slot is not None:
            _table[self._slot].pid = 0
            self._slot = None

    def _another_holds_fewer(self) -> bool:
        own, arbiter = os.getpid(), self.ppid
        return any(
            slot.pid not in (0, own, arbiter)
            and slot.connections < self._held
            and _alive(slot.pid)
            for slot in _table
        )

    def accept(self, listener):
        now = time.monotonic()
        if self._handing_off_until:
            if now < self._handing_off_until:
                return  # another listener's event in the same turn: still left to the others
            self._handing_off_until = 0.0  # nobody took it in time: this worker does
        elif self._another_holds_fewer():
            self._handing_off_until = now + HANDOFF_SECONDS
            self.set_accept_enabled(False)
            return
        super().accept(listener)

    def set_accept_enabled(self, enabled):
        # The run loop calls this on every turn. A hand-off ends when another worker took the
        # connection (or this one lost some): then the next one is weighed anew; and it is
        # forgotten when this worker wakes too late to tell a waiting connection from a new one.
        if self._handing_off_until:
            now = time.monotonic()
            too_late = now >= self._handing_off_until + LATE_WAKE_SECONDS
            if too_late or not self._another_holds_fewer():
                self._handing_off_until = 0.0
            elif now < self._handing_off_until:
                enabled = False
        if not self.alive:
            # Stopping (a reload, a rolling update): accepting no more, however few it holds,
            # so the others must not leave connections to it while it drains.
            self._leave_table()
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        # Wake when the hand-off ends, to take the connection if nobody did.
        left = self._handing_off_until - time.monotonic()
        if self._handing_off_until and left > 0:
            timeout = min(timeout, left)
        super().wait_for_and_dispatch_events(timeout)
