"""Prometheus metrics: what operators watch (logins, PINs, SMS cost, latency per endpoint).

Under gunicorn every worker is a process of its own: with PROMETHEUS_MULTIPROC_DIR set
(idp/gunicorn_conf.py sets it) prometheus_client writes the values to files there and one scrape
adds them up. Metrics are served only when IDP_METRICS_ENABLED is true: on IDP_METRICS_PORT
from the gunicorn master when that is set (a port the ingress never routes), else at /metrics.
"""

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

LOGINS = Counter(
    "idp_logins_total",
    "Logins: ok (PIN confirmed, session started), password_rejected, or throttled (the "
    "password attempts of the account from that network used up: not checked).",
    ["result"],
)
SECOND_FACTOR_LOGINS = Counter(
    "idp_second_factor_logins_total",
    "Logins confirmed, by the second factor that confirmed them (sms, passkey).",
    ["factor"],
)
SMS_SAVED = Counter(
    "idp_sms_saved_total",
    "Logins confirmed by a factor that costs nothing per challenge (a passkey): an SMS saved.",
)
PIN_CHECKS = Counter(
    "idp_pin_checks_total",
    "PIN tries by purpose and result (ok, wrong, expired, ended, locked).",
    ["purpose", "result"],
)
PINS_SENT = Counter("idp_pins_sent_total", "PIN SMS handed to the provider.", ["purpose"])
PIN_SEND_FAILURES = Counter(
    "idp_pin_send_failures_total", "PIN SMS the provider did not accept.", ["purpose"]
)
PINS_UNCONFIRMED = Counter(
    "idp_pins_unconfirmed_total",
    "PIN SMS the provider took but did not confirm within SMS_TIMEOUT (they may come late).",
    ["purpose"],
)
SMS_COST = Counter("idp_sms_cost_eur_total", "What the SMS provider reported as charged, in EUR.")
SMS_BUDGET_EXCEEDED = Counter(
    "idp_sms_budget_exceeded_total",
    "SMS refused because the global hourly budget (messages or money) was used up: an alert.",
    ["budget"],
)
SMS_REFUSED = Counter(
    "idp_sms_refused_total", "PIN SMS refused before sending, by reason.", ["reason"]
)
TOKENS_ISSUED = Counter(
    "idp_tokens_issued_total",
    "Successful token responses by grant type (authorization_code, refresh_token, ...).",
    ["grant"],
)

LOGOUT_DELIVERIES = Counter(
    "idp_logout_deliveries_total",
    "Tries to hand a back-channel logout to a relying party: delivered, failed (tried again "
    "later), or given_up (not taken within IDP_LOGOUT_GIVE_UP_AFTER: an alert, the relying "
    "party keeps a session that ended).",
    ["result"],
)


def count_second_factor(factor: str, *, paid: bool) -> None:
    SECOND_FACTOR_LOGINS.labels(factor=factor).inc()
    if not paid:
        SMS_SAVED.inc()


REQUEST_DURATION = Histogram(
    "idp_request_duration_seconds",
    "Time to answer a request, by endpoint (the route's name, never the path).",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def record_sms_cost(price: str | None) -> None:
    if price:
        try:
            SMS_COST.inc(float(price))
        except ValueError:
            return


def registry() -> CollectorRegistry:
    """All processes' values in multiprocess mode, this process's otherwise."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


def init_app(app: Flask) -> None:
    if not app.config["METRICS_ENABLED"]:
        return  # nobody scrapes: no timing on every request

    def start_timer() -> None:
        g.request_started = time.perf_counter()

    # Before every other hook, so that requests they reject are timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)

    @app.after_request
    def observe_duration(response: Response) -> Response:
        started = g.pop("request_started", None)
        if started is not None:
            REQUEST_DURATION.labels(
                endpoint=request.endpoint or "unmatched", method=request.method
            ).observe(time.perf_counter() - started)
        return response

    if not app.config["METRICS_PORT"]:
        app.add_url_rule("/metrics", "metrics", serve_metrics)


def serve_metrics() -> Response:
    return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST)


def start_metrics_server(config):
    """Serves the metrics on their own port (from the gunicorn master), when enabled; returns
    the server and its thread, or None."""
    if not (config["METRICS_ENABLED"] and config["METRICS_PORT"]):
        return None
    return start_http_server(
        int(config["METRICS_PORT"]), addr=config["METRICS_ADDRESS"], registry=registry()
    )


def start_metrics_server_from_environment():
    """The gunicorn master's metrics port: the settings as the workers will load them."""
    from idp.platform.config import environment_from_env, load_config

    settings = Flask("idp", instance_path=os.environ.get("IDP_INSTANCE_PATH") or None)
    load_config(settings, environment_from_env(), None)
    return start_metrics_server(settings.config)
