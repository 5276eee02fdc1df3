"""Draining an instance before it stops, so that a rolling restart loses no request.

Stopping at once races the balancer: it may reuse a keep-alive connection, or send a new
request, in the moment the instance closes (seen as "connection closed without response"). So
a stop goes in two steps. First the drain file (IDP_DRAIN_FILE) is created — by the pod's
preStop hook, or by the service manager on a VM — and the instance goes on serving, but
/readyz answers 503 "draining", so that the balancer takes it out, and every response says
`Connection: close`, so that clients open their next connection elsewhere. After longer than
the balancer's check interval, SIGTERM follows and gunicorn finishes what is in flight.

IDP_DRAIN_FILE is read from the environment (by the app and by gunicorn's hooks alike), not
from the configuration; unset, an instance does not drain."""

import os

DRAIN_FILE_VARIABLE = "IDP_DRAIN_FILE"


def drain_file() -> str | None:
    return os.environ.get(DRAIN_FILE_VARIABLE) or None


def draining() -> bool:
    path = drain_file()
    return path is not None and os.path.exists(path)


def forget_earlier_drain() -> None:
    """At start: a drain file left from the last stop (a VM restarted, a container's /tmp
    kept) would keep the new instance out of traffic for good."""
    path = drain_file()
    if path is not None and os.path.exists(path):
        os.unlink(path)
