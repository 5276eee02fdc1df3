"""gunicorn settings, shipped in the package: gunicorn -c python:idp.gunicorn_conf idp.wsgi:app

Environment: GUNICORN_BIND (default 127.0.0.1:8000; 0.0.0.0:8000 in a container),
GUNICORN_WORKERS (default 1), GUNICORN_THREADS (default 4),
GUNICORN_CONTROL_SOCKET (unset: no control socket; a path of this instance's own for gunicornc),
IDP_DRAIN_FILE (a path whose existence drains the instance before it stops: idp.platform.drain),
IDP_LOG_LEVEL, and the IDP_METRICS_* settings documented in config/default.py.
"""

import os
import tempfile
from pathlib import Path

from idp.platform.memory import return_large_blocks_to_the_system

# Before the workers fork, so that they inherit it: freed argon2 buffers go back to the system
# instead of staying in each thread's heap (idp.platform.memory).
return_large_blocks_to_the_system()

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# One worker process per instance; more capacity is more instances (pods, or processes on a VM)
# behind a balancer that sends each new connection to the instance holding the fewest. Several
# workers in one instance accept from one shared socket, whoever wakes first: keep-alive
# connections then stay where they landed, and bunch on one worker (one core) while another
# idles. The balancer sees every instance's connections; gunicorn's arbiter does not.
workers = int(os.environ.get("GUNICORN_WORKERS", 1))
# gunicorn's threaded worker, not a sync one: sending an SMS is an outbound HTTPS call, during
# which a sync worker would serve nobody else. argon2 releases the GIL, so a login's verify
# runs on another core beside the threads serving other requests.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))

# A worker silent this long is stuck (Vonage and SMTP give up after 10 s): restart it. It is
# the worker's heartbeat, not a bound on a request: gunicorn has no header timeout, and a thread
# reading a slow client's headers waits as long as the client trickles. Only the proxy, which
# bounds them, may reach an instance (docs/security.md, "Slow clients").
timeout = 30
# On SIGTERM (a rolling update), requests in flight get this long to finish; the pod's
# terminationGracePeriodSeconds is longer.
graceful_timeout = 25
# Longer than the ingress keeps idle upstream connections, so that gunicorn never closes one
# that the proxy is about to reuse (that race shows as sporadic 502s).
keepalive = 75
# gunicorn's control socket (for gunicornc) is one path per user by default, which several
# instances on a host (two behind HAProxy, the tests, the benchmark) would share: off, unless
# an instance is given a path of its own.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# JSON lines on stderr. The access line carries method, path without query string (codes and
# tokens travel there), status, duration and request id; see
# idp.platform.logging_setup.GunicornLogger.
logger_class = "idp.platform.logging_setup.GunicornLogger"
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("IDP_LOG_LEVEL", "info").lower()

# Every worker writes its metric values here and a scrape adds them up (prometheus_client's
# multiprocess mode). Set before any worker imports prometheus_client; a directory of its own
# per server unless the deployment names one.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-prometheus-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def shared_counters_missing(environ, worker_count: int) -> bool:
    """Several workers keep separate memory: without Redis every one of them would grant its
    own share of login tries and SMS, multiplying every limit by the worker count."""
    production = environ.get("IDP_CONFIG", "production") == "production"
    shared = environ.get("IDP_REDIS_URL") or environ.get("IDP_RATELIMIT_STORAGE_URI")
    return production and worker_count > 1 and not shared


def on_starting(server):
    if shared_counters_missing(os.environ, server.cfg.workers):
        raise RuntimeError(
            "several workers need IDP_REDIS_URL for shared rate limits: "
            "set it, or run one worker (GUNICORN_WORKERS=1)"
        )
    from idp.platform import drain

    drain.forget_earlier_drain()
    # Values of processes from an earlier run (a restarted container) must not count again.
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def pre_request(worker, req):
    # While the instance drains (idp.platform.drain), each response closes its connection:
    # gunicorn drops a Connection header set by the app, so the request is marked here.
    from idp.platform import drain

    if drain.draining():
        req.must_close = True


def when_ready(server):
    from idp.platform.metrics import start_metrics_server_from_environment

    start_metrics_server_from_environment()


def post_worker_init(worker):
    # In the worker, after the fork: each worker polls the logout outbox (idp.oidc.logout_poller).
    from flask import Flask

    from idp.oidc import logout_poller

    if isinstance(worker.wsgi, Flask):
        logout_poller.start(worker.wsgi)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
