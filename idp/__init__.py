"""The identity provider: create_app() is the only place that wires things together."""

import os
from collections.abc import Mapping

from flask import Flask

from idp.platform.config import environment_from_env, load_config
from idp.platform.database import configure_engine_options, init_database
from idp.platform.resources import resource_dir


def create_app(
    environment: str | None = None, overrides: Mapping | None = None, *, serving_only: bool = False
) -> Flask:
    """The app. `serving_only` for the one gunicorn serves (idp.wsgi): without the operator's
    commands and the migrations (Alembic), which the commands, the demo and the tests use and a
    serving worker never does; loading them would cost each worker about 12 MiB."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("IDP_INSTANCE_PATH") or None,
        instance_relative_config=True,
        template_folder=str(resource_dir("templates")),
    )
    load_config(app, environment or environment_from_env(), overrides)
    configure_engine_options(app)
    os.makedirs(app.instance_path, exist_ok=True)

    from idp.accounts.passwords import PasswordHashing
    from idp.oidc.discovery import precompute_discovery
    from idp.platform import background
    from idp.platform.extensions import babel, csrf, db
    from idp.platform.i18n import select_locale
    from idp.platform.web import FlowCookieSessions
    from idp.senders import init_senders

    app.session_interface = FlowCookieSessions()
    db.init_app(app)
    with app.app_context():
        init_database(app, db.engine)
    if not serving_only:
        from flask_migrate import Migrate

        Migrate(
            app,
            db,
            directory=str(resource_dir("migrations")),
            render_as_batch=True,
            compare_type=True,
        )
    babel.init_app(app, locale_selector=select_locale)
    csrf.init_app(app)
    init_senders(app)
    _install_abuse_defences(app)
    background.init_app(app)
    app.extensions["idp.passwords"] = PasswordHashing.from_config(app.config)

    _register_blueprints(app)
    _connect_events(app)
    _install_second_factors(app)
    # After the factors: discovery names the methods (amr) of those offered.
    precompute_discovery(app)
    _install_request_hooks(app)
    _configure_logging(app)
    _configure_monitoring(app)

    if not serving_only:
        from idp.cli import register_commands

        register_commands(app)
    return app


def _install_abuse_defences(app: Flask) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    from idp.platform.ratelimit import counters_storage, init_rate_limits
    from idp.senders.sms_guard import SmsGuard

    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies:
        # The client address comes from X-Forwarded-For only through this many of our own
        # proxies; otherwise anybody could pick the address that rate limits count.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=0)
    init_rate_limits(app)
    app.extensions["idp.sms_guard"] = SmsGuard.from_config(app.config, counters_storage(app))


def _connect_events(app: Flask) -> None:
    """What each capability does when one below it announces a change (idp.platform.hooks)."""
    from idp.accounts import events as account_events
    from idp.authn import account_changes
    from idp.authn import events as login_events
    from idp.oidc import tokens_logout
    from idp.platform.hooks import connect

    for event in (account_events.DISABLED, account_events.PASSWORD_RESET):
        connect(app, event, account_changes.signed_out_everywhere)
        connect(app, event, tokens_logout.account_signed_out)
    connect(app, account_events.PHONE_CHANGED, account_changes.phone_changed)
    connect(app, login_events.SESSION_ENDED, tokens_logout.session_ended)


def _install_second_factors(app: Flask) -> None:
    """The factors that can confirm a login (IDP_SECOND_FACTORS picks among them), and what a
    confirmed transaction completes, by its purpose."""
    from idp.activation.views import finish_activation
    from idp.authn import confirmations, factors, way_back
    from idp.authn.factors.passkey import PASSKEY
    from idp.authn.factors.sms import SMS_PIN
    from idp.authn.login_views import finish_login
    from idp.authn.models import TransactionPurpose
    from idp.oidc.way_back import WaitingRequests
    from idp.selfservice.password_views import finish_password_change
    from idp.selfservice.phone_views import finish_phone_current, finish_phone_new

    factors.register(app, SMS_PIN)
    factors.register(app, PASSKEY)
    # A login goes back to the relying party's request that waits for it.
    way_back.register(app, WaitingRequests())
    factors.check_offered(app)
    confirmations.register(app, TransactionPurpose.LOGIN, finish_login)
    confirmations.register(app, TransactionPurpose.STEP_UP, finish_login)
    confirmations.register(app, TransactionPurpose.ACTIVATION, finish_activation)
    confirmations.register(app, TransactionPurpose.PHONE_CURRENT, finish_phone_current)
    confirmations.register(app, TransactionPurpose.PHONE_NEW, finish_phone_new)
    confirmations.register(app, TransactionPurpose.PASSWORD_CHANGE, finish_password_change)


def _register_blueprints(app: Flask) -> None:
    from idp.activation import forgot_views as password_forgot
    from idp.activation import views as activation
    from idp.authn import login_views as login
    from idp.authn.factors.passkey import views as passkey
    from idp.authn.factors.sms import views as pin
    from idp.oidc import server as oauth
    from idp.oidc import views as oidc
    from idp.platform import health, i18n
    from idp.platform.error_pages import answer_errors_under
    from idp.scim import views as scim
    from idp.selfservice import passkeys_views, password_views, phone_views
    from idp.selfservice import sessions_views as account_sessions
    from idp.selfservice import views as account

    for blueprint in (account.bp, activation.bp, pin.bp, login.bp, health.bp, i18n.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(account_sessions.bp)
    app.register_blueprint(password_forgot.bp)
    app.register_blueprint(phone_views.bp)
    app.register_blueprint(password_views.bp)
    app.register_blueprint(passkey.bp)
    app.register_blueprint(passkeys_views.bp)

    oauth.init_app(app)
    app.register_blueprint(oidc.bp)
    app.register_blueprint(oidc.api)
    app.register_blueprint(scim.bp)
    answer_errors_under(app, scim.bp.url_prefix + "/", scim.http_error)
    app.config["JSON_ERROR_BLUEPRINTS"] = (
        *app.config.get("JSON_ERROR_BLUEPRINTS", ()),
        "oidc_api",
        "scim_api",
    )
    if app.config["DEV_PAGES"]:
        from idp.senders import devtools

        app.register_blueprint(devtools.bp)


def _install_request_hooks(app: Flask) -> None:
    from flask_babel import get_locale

    from idp.platform.assets import install_assets
    from idp.platform.error_pages import register_error_handlers
    from idp.platform.headers import install_security_headers

    install_assets(app)
    install_security_headers(app)
    register_error_handlers(app)

    from flask_babel import lazy_gettext as _l

    # The steps of the flow a page belongs to, for its progress line.
    flows = {
        "activation": (_l("Set password"), _l("Confirm")),
        "login": (_l("Password"), _l("PIN")),
        "phone": (_l("New number"), _l("PIN to current number"), _l("PIN to new number")),
        "password_change": (_l("New password"), _l("Confirm")),
    }

    @app.context_processor
    def page_context():
        return {
            "product": app.config["PRODUCT_NAME"],
            "current_locale": str(get_locale() or app.config["LANGUAGES"][0]),
            "languages": app.config["LANGUAGES"],
            "journey_steps": lambda flow: [str(step) for step in flows[flow]],
        }


def _configure_logging(app: Flask) -> None:
    from idp.platform.logging_setup import configure_logging

    configure_logging(app)


def _configure_monitoring(app: Flask) -> None:
    from idp.oidc import keys
    from idp.platform import metrics
    from idp.platform.health import init_readiness, register_readiness_check

    metrics.init_app(app)
    init_readiness(app)
    register_readiness_check(app, "signing_key", keys.check_signing_key)
