"""gunicorn settings, shipped in the package: gunicorn -c python:idp.gunicorn_conf idp.wsgi:app

Environment: GUNICORN_BIND (default 127.0.0.1:8000; 0.0.0.0:8000 in a container),
GUNICORN_WORKERS (default: the CPUs this process may use), GUNICORN_THREADS (default 4),
GUNICORN_CONTROL_SOCKET (unset: no control socket; a path of this instance's own for gunicornc),
IDP_LOG_LEVEL, and the IDP_METRICS_* settings documented in config/default.py.
"""

import os
import tempfile
from pathlib import Path


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# argon2 (the login's real cost) occupies a core per verify: one process per CPU is enough, and
# a container limited below the node's CPU count sets GUNICORN_WORKERS to its limit.
workers = int(os.environ.get("GUNICORN_WORKERS", _cpus()))
# Threads, not a sync worker: sending an SMS is an outbound HTTPS call, during which a sync
# worker would serve nobody else. argon2 releases the GIL, so threads also share the cores.
# gunicorn's gthread worker, except that a new connection goes to the worker holding the fewest:
# keep-alive connections stay where they land, and gunicorn's own lets them bunch on one worker.
worker_class = "idp.balanced_worker.BalancedThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", 4))

# A worker silent this long is stuck (Vonage and SMTP give up after 10 s): restart it.
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
# tokens travel there), status, duration and request id; see idp.logging_setup.GunicornLogger.
logger_class = "idp.logging_setup.GunicornLogger"
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
    # Values of processes from an earlier run (a restarted container) must not count again.
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def when_ready(server):
    from idp.metrics import start_metrics_server_from_environment

    start_metrics_server_from_environment()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    from idp.balanced_worker import forget_worker

    multiprocess.mark_process_dead(worker.pid)
    forget_worker(worker)
