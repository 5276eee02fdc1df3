"""Request rate limits (Flask-Limiter) and the counters behind the brute-force and SMS
defences. All share one storage: Redis when IDP_REDIS_URL is set, so that limits hold across
workers and hosts; this process's memory otherwise (development, one worker)."""

import math
import time
from datetime import UTC, datetime

import limits.errors
from flask import Flask, current_app, request
from flask_limiter import Limiter
from limits import parse, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from idp.errors import ConfigurationError
from idp.platform.network import limit_network_of


def client_ip() -> str:
    return request.remote_addr or "unknown"


def client_network() -> str:
    return limit_network_of(client_ip())


# What the shared counters raise when their storage (Redis) cannot be reached or fails.
STORAGE_ERRORS = (RedisError, limits.errors.StorageError)

limiter = Limiter(key_func=client_ip, strategy="moving-window", headers_enabled=True)


def setting(name: str):
    """A limit read from the configuration at request time."""
    return lambda: current_app.config[name]


def limit_posts(*, per_ip: str, per_network: str | None = None):
    """Decorator: the configured limits on a view's POSTs, by IP and by network. Not by the
    account named in the form: anybody could use that up and lock its owner out."""

    def decorate(view):
        decorated = limiter.limit(setting(per_ip), key_func=client_ip, methods=["POST"])(view)
        if per_network:
            decorated = limiter.limit(
                setting(per_network), key_func=client_network, methods=["POST"]
            )(decorated)
        return decorated

    return decorate


def init_rate_limits(app: Flask) -> None:
    if not app.config.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"] or "memory://"
    uri = app.config["RATELIMIT_STORAGE_URI"]
    options = redis_timeouts(app.config) if uri.startswith("redis") else {}
    # The request limits (Flask-Limiter's storage) and the counters alike.
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {
        **app.config.get("RATELIMIT_STORAGE_OPTIONS", {}),
        **options,
    }
    app.extensions["idp.counters"] = shared_storage(uri, **options)
    limiter.init_app(app)
    # Every limit of ours sits on its view (limit_posts), whose wrapper checks it when the view
    # runs. The limiter's application-wide hook looks on every request for default,
    # application and blueprint limits, of which there are none: it only cost time, a fifth
    # of a discovery request's and a tenth of a refresh grant's. (Not there when disabled.)
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:
        hooks.remove(limiter._check_request_limit)


def redis_timeouts(config) -> dict[str, float]:
    """A Redis that does not answer (unreachable, stopped, failing over) fails the request after
    REDIS_TIMEOUT seconds (a 503, idp.platform.outages), instead of the operating system's
    minutes for a connect and no limit at all for a reply."""
    seconds = float(config["REDIS_TIMEOUT"])
    return {"socket_connect_timeout": seconds, "socket_timeout": seconds}


def shared_storage(uri: str, **options) -> Storage:
    setting = "IDP_REDIS_URL (or IDP_RATELIMIT_STORAGE_URI)"
    if "://" not in uri:
        # localhost:6379 would reach limits as a "scheme" of its own, and its message would be
        # "unknown storage scheme : localhost:6379://...". The value is not repeated: it may
        # carry a password.
        raise ConfigurationError(
            f"{setting} cannot be used: it needs a URL like redis://host:port/db "
            "(rediss:// with TLS)"
        )
    try:
        return storage_from_string(uri, **options)
    except limits.errors.ConfigurationError as error:
        # limits names the whole URL, password included: say the scheme only.
        scheme = uri.partition("://")[0]
        reason = str(error).replace(uri, f"{scheme}://...")
        raise ConfigurationError(f"{setting} cannot be used: {reason}") from None


def counters_storage(app: Flask) -> Storage:
    return app.extensions["idp.counters"]


def counters() -> Storage:
    return counters_storage(current_app)


def take_login_attempt(account: str, ip: str | None) -> bool:
    """Counts a password attempt for this account from this network; False when the pair has
    used up its attempts. Counted before the password is checked, so that parallel requests get
    no extra guesses; the account stays usable from every other network."""
    key = _login_key(account, ip)
    allowed = MovingWindowRateLimiter(counters()).hit(_login_limit(), *key)
    if not allowed:
        # What support is shown (`idp users show`): the counters are kept per network, which
        # the storage cannot list for an account; this mark says that one of them is full.
        counters().incr(_blocked_mark(account), _login_limit().get_expiry())
    return allowed


def login_attempt_free_at(account: str, ip: str | None) -> datetime:
    """When the oldest attempt of the pair leaves the window, and a new one is allowed."""
    reset, _ = MovingWindowRateLimiter(counters()).get_window_stats(
        _login_limit(), *_login_key(account, ip)
    )
    return datetime.fromtimestamp(reset, UTC)


def login_attempts_blocked(account: str) -> tuple[int, datetime | None]:
    """How many attempts on the account its per-network limits refused lately, and until
    about when the last network that ran out stays blocked."""
    refused = counters().get(_blocked_mark(account))
    if not refused:
        return 0, None
    return refused, datetime.fromtimestamp(counters().get_expiry(_blocked_mark(account)), UTC)


def lift_login_attempt_limits(account: str) -> None:
    """Frees the account from every network at once: its counters are keyed by an epoch that
    this moves on, so the full ones are left to expire unread."""
    counters().incr(_epoch_key(account), EPOCH_LIFETIME)
    counters().clear(_blocked_mark(account))


def take_pending_authorization(ip: str | None) -> int | None:
    """Counts an authorization request that is kept server-side while it waits for a login
    (services.authorizations) against its address and its network: anybody can make /authorize
    ask for a login. Seconds until one is allowed again when either has used up its limits
    (PENDING_AUTHORIZATIONS_PER_IP, PENDING_AUTHORIZATIONS_PER_NETWORK), else None."""
    strategy = MovingWindowRateLimiter(counters())
    for setting, key in (
        ("PENDING_AUTHORIZATIONS_PER_IP", ip or "unknown"),
        ("PENDING_AUTHORIZATIONS_PER_NETWORK", limit_network_of(ip)),
    ):
        for limit in parse_many(current_app.config[setting]):
            if not strategy.hit(limit, "pending-authorization", setting, key):
                reset, _ = strategy.get_window_stats(limit, "pending-authorization", setting, key)
                return max(1, math.ceil(reset - time.time()))
    return None


def take_password_reset(account: str, ip: str | None) -> bool:
    """Counts a forgotten-password request for the account named, from the network of `ip`
    (PASSWORD_RESET_PER_ACCOUNT_AND_NETWORK), then over all networks (PASSWORD_RESET_PER_ACCOUNT);
    False once either is used up. Per network first: whoever asks for her name elsewhere uses
    up that network's requests, not hers. The caller counts every name alike, known or not."""
    strategy = MovingWindowRateLimiter(counters())
    config = current_app.config
    limits = [
        (limit, ("password-reset", account, limit_network_of(ip)))
        for limit in parse_many(config["PASSWORD_RESET_PER_ACCOUNT_AND_NETWORK"])
    ] + [
        (limit, ("password-reset", account))
        for limit in parse_many(config["PASSWORD_RESET_PER_ACCOUNT"])
    ]
    return all(strategy.hit(limit, *key) for limit, key in limits)


# Longer than any sensible window of LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK: when an epoch
# expires and starts again at 0, the counters of that epoch are long gone.
EPOCH_LIFETIME = 7 * 24 * 3600


def _login_limit():
    return parse(current_app.config["LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK"])


def _login_key(account: str, ip: str | None) -> tuple[str, str, str, str]:
    return "login", account, str(counters().get(_epoch_key(account))), limit_network_of(ip)


def _epoch_key(account: str) -> str:
    return f"login-epoch/{account}"


def _blocked_mark(account: str) -> str:
    return f"login-blocked/{account}"
