"""Every setting of the identity provider, documented once.

Each can be overridden by an environment variable named IDP_<SETTING> (values are parsed as
JSON when they can be, so IDP_MAIL_PORT=25 is a number and IDP_MAIL_USE_TLS=false a boolean).
An IDP_* variable that names no setting stops the start (a misspelt name would otherwise be
ignored, and its setting left at the default), except the few read outside this configuration
(idp.platform.config.NOT_SETTINGS: IDP_CONFIG, IDP_INSTANCE_PATH, IDP_TEST_DATABASE_URI).
The files development.py, testing.py and production.py beside this one change only what differs
in that environment; IDP_CONFIG chooses one of them (default: production).
"""

# --- Core -------------------------------------------------------------------------------------
# Signs cookies, links and CSRF tokens and derives the key that encrypts signing keys at rest
# (unless KEY_ENCRYPTION_SECRET is set). Required outside development and testing: the app
# refuses to start without it. Every instance needs the same one: one that cannot decrypt the
# signing keys fails /readyz and logs why; `idp keys list` marks such keys.
SECRET_KEY = None
# Database URL. Unset: SQLite in the instance folder. Production: postgresql+psycopg://...
SQLALCHEMY_DATABASE_URI = None
# Database URL of the owner role that `idp db upgrade` connects as (unset: the one above); the
# upgrade then grants the role above what the app needs, on the audit tables no rewriting.
MIGRATION_DATABASE_URI = None
# Secret (32 characters or more) that keys the audit chain (HMAC) and signs `idp audit anchor`
# files; never stored in the database, never logged. Required in production; keep it with backups.
AUDIT_KEY = None
# A pooled server connection idle this many seconds is checked before it is reused (and
# replaced when the server dropped it); one used more recently is reused unchecked.
DATABASE_PING_AFTER_IDLE_SECONDS = 1.0
# Seconds to wait for a new database connection (libpq's connect_timeout, whole seconds, at
# least 1): a server that is down or unreachable fails a request with 503 after this, not hangs.
DATABASE_CONNECT_TIMEOUT = 3
# Seconds a statement may run before the server cancels it (the request gets a 503); below
# gunicorn's worker timeout (30). 0: no limit. `idp db upgrade` runs without it.
DATABASE_STATEMENT_TIMEOUT = 20
# Production refuses SQLite unless this is true (a single-host installation that knows the cost).
ALLOW_SQLITE = False
# The issuer URL. Discovery lives under it, and every link in a mail is built from it, never from
# the Host header of a request. Required, without user info, query or fragment; production
# refuses one that is not https or that points at this machine, however spelled (127.1,
# 0x7f000001, [::ffff:127.0.0.1], localhost., ...; development and testing set a local one).
ISSUER = None
# The e:service portal link put in the activation mail. Required, with the same rules as ISSUER.
PORTAL_URL = None
# true lets production use loopback, localhost and plain-http ISSUER and PORTAL_URL (a lab, a
# test bed). Off: a production start with such a URL is refused, as links in mails sent from it
# would lead customers nowhere.
ALLOW_LOCAL_URLS = False
# The product name shown on pages, in mails and in the SMS.
PRODUCT_NAME = "e:service"

# --- Mail -------------------------------------------------------------------------------------
# smtp (production), console or file (development only: they print or write the mail).
MAIL_BACKEND = "console"
MAIL_SERVER = "localhost"
MAIL_PORT = 587
# STARTTLS after connecting (port 587). Certificates are always verified.
MAIL_USE_TLS = True
# Implicit TLS from the first byte (port 465). Excludes MAIL_USE_TLS.
MAIL_USE_SSL = False
MAIL_USERNAME = None
MAIL_PASSWORD = None
# The From of every mail: an address, or `Name <address>`. The name is taken as written (a colon,
# comma, quote or umlaut in it is fine: the header quotes or encodes it); the app refuses to
# start when the address is not one mailbox.
MAIL_DEFAULT_SENDER = "e:service <no-reply@localhost>"
# Seconds to wait for the SMTP server before giving up.
MAIL_TIMEOUT = 10
# A CA bundle to trust for the SMTP server instead of the system's (private CAs, tests).
MAIL_CA_FILE = None

# --- SMS --------------------------------------------------------------------------------------
# vonage (production), console or file (development only).
SMS_BACKEND = "console"
VONAGE_API_KEY = None
VONAGE_API_SECRET = None
# Sender id shown on the phone (alphanumeric, at most 11 characters).
VONAGE_SMS_FROM = "ecotel"
# Host of Vonage's SMS REST API; tests point it at a local TLS fake.
VONAGE_REST_HOST = "rest.nexmo.com"
# Seconds to wait for Vonage in all. A send it took without answering by then counts as sent
# but unconfirmed: its PIN stays valid, and the PIN page says the SMS may come late.
SMS_TIMEOUT = 10

# Where the file mail and SMS backends write. Unset: "outbox" in the instance folder.
OUTBOX_DIR = None

# --- Operations -------------------------------------------------------------------------------
# Level of the application's JSON log lines on stderr (DEBUG, INFO, WARNING, ERROR).
LOG_LEVEL = "INFO"
# Serve Prometheus metrics at all. Off by default: they are for the cluster, not the public.
METRICS_ENABLED = False
# Serve them on this port of their own (from the gunicorn master); unset: at /metrics.
METRICS_PORT = None
# Address the metrics port listens on (0.0.0.0 in a pod, where a NetworkPolicy guards it).
METRICS_ADDRESS = "127.0.0.1"

# --- Shared state -----------------------------------------------------------------------------
# Redis URL for state shared by several workers and hosts (rate limits). Unset: in-process.
REDIS_URL = None
# Seconds to wait for Redis to connect or answer; then sign-in answers 503 (fail closed).
REDIS_TIMEOUT = 2.0
# Where rate-limit and SMS counters live. Unset: IDP_REDIS_URL, else this process's memory.
RATELIMIT_STORAGE_URI = None
# How many reverse proxies of ours (ingress, load balancer) stand before the app. Only then is
# X-Forwarded-For believed for the client address that rate limits and the audit log use.
TRUSTED_PROXIES = 0

# --- SMS defences (checked before any SMS is handed to the provider) -------------------------
# Countries whose mobile numbers may receive PINs (ISO 3166 codes); also checked at invitation.
SMS_ALLOWED_COUNTRIES = ["DE", "AT", "CH"]
# PIN SMS per phone number and per account (limits syntax: "N per day|hour|minute"). Every PIN
# counts, whatever asked for it: logins, the step-up that confirms a booking, resends. Sized for
# a busy administrator's day: a few logins (a session lasts at most 10 hours and ends after 30
# minutes idle), a step-up for each of some 20 bookings, a resend now and then: about 30 SMS;
# 40 leaves room above that and keeps pumping with one account's password to a few euros a
# day. `idp users show` tells how much of both is used, `idp users unlock` starts them again.
SMS_LIMIT_PER_NUMBER = "40 per day"
SMS_LIMIT_PER_ACCOUNT = "40 per day"
# SMS an account may send to a number that is not its own yet: the PINs proving the new number
# of a phone change (/account/phone; two changes with their resends). A stolen session cannot
# pump SMS to numbers of its choosing, nor use up another person's number cap.
SMS_LIMIT_TO_NEW_NUMBERS_PER_ACCOUNT = "8 per day"
# Global budget over all numbers: messages per hour, and money per hour (EUR, as Vonage
# reports each message's price). Past either, sending stops for the rest of the hour and an
# error is logged and counted (idp_sms_budget_exceeded_total).
SMS_BUDGET_MESSAGES = "300 per hour"
SMS_BUDGET_EUR_PER_HOUR = 20.0

# --- Passwords (NIST SP 800-63B) -------------------------------------------------------------
# argon2id cost. OWASP's minimum is t=2, m=19 MiB, p=1; see docs/performance.md for timings.
ARGON2_TIME_COST = 2
ARGON2_MEMORY_COST_KIB = 19456
ARGON2_PARALLELISM = 1
# How many argon2 computations may run at once in one process: more only queue for the CPU and
# use memory (each takes ARGON2_MEMORY_COST_KIB).
ARGON2_MAX_CONCURRENT = 2
# Seconds a request waits for one of those slots before it gets "busy, try again" (503 with
# Retry-After): a flood of logins must not hold every worker thread in the queue.
ARGON2_WAIT_SECONDS = 3.0
PASSWORD_MIN_LENGTH = 12
# Longest password in characters (NIST: at least 64 must be accepted).
PASSWORD_MAX_LENGTH = 256
# Longest password in UTF-8 bytes, against hashing floods with huge inputs.
PASSWORD_MAX_BYTES = 1024

# --- Activation links ------------------------------------------------------------------------
# Lifetime of an activation link, and of a reset link that an operator sends, in seconds
# (72 hours).
INVITATION_LIFETIME = 72 * 3600
# Lifetime of the set-password link that the forgotten-password page (/password/forgot) mails,
# in seconds (1 hour): whoever asked is at her desk now, and a short link is a small target.
PASSWORD_RESET_LIFETIME = 3600
# Forgotten-password requests per account (the username typed, known or not: counting only
# known ones would tell which exist), after which no further link is mailed for a while. The
# page answers the same whether or not a mail goes out. Counted per network (/24, /64) first,
# so that someone elsewhere asking for her name cannot use up her own requests; then over all
# networks, which bounds the mails an account can be sent.
PASSWORD_RESET_PER_ACCOUNT_AND_NETWORK = "3 per hour; 10 per day"  # noqa: S105 (a limit)
PASSWORD_RESET_PER_ACCOUNT = "10 per hour; 30 per day"  # noqa: S105 (a limit)

# --- Second factors ---------------------------------------------------------------------------
# Which second factors confirm a login after the password, in order of preference: an account
# goes to the first one it can use, one free per challenge before the SMS. "sms" (the PIN by
# SMS to the phone on record) is the leaflet's rule and every account can use it;
# ["sms", "passkey"] lets an account that registered a passkey confirm with it instead
# (the SMS stays on the same page) and shows the page {ISSUER}/account/passkeys.
SECOND_FACTORS = ["sms"]
# Seconds after a login with password and SMS PIN within which its session may add or remove a
# passkey; later, a new login (a step-up) comes first.
PASSKEY_FRESH_LOGIN_SECONDS = 300

# --- SMS PIN ----------------------------------------------------------------------------------
# Seconds a PIN stays valid.
PIN_LIFETIME = 300
# Wrong PINs allowed per login or activation attempt before it ends (over all attempts of an
# account, LOCKOUT_THRESHOLD locks it).
PIN_MAX_ATTEMPTS = 5
# Seconds after the account's last PIN before another one goes out: "send a new PIN", and also
# a login or activation begun again meanwhile, which starts without a PIN and says when one can
# be asked for (starting over is no way around the wait).
PIN_RESEND_COOLDOWN = 60
# New PINs allowed per login or activation attempt.
PIN_MAX_RESENDS = 3
# Seconds a started login or activation (password accepted, PIN pending) stays open.
TRANSACTION_LIFETIME = 900
# Seconds an authorization request of a relying party waits for the login it asked for: every
# detour of that login (a PIN step that ended, a used link, the language switch) leads back to
# the relying party within this time, with its original `state`.
PENDING_AUTHORIZATION_LIFETIME = 3600
# Authorization requests kept while they wait for a login, per address and per network (/24,
# /64): anybody can make /authorize ask for one, and each is a row for that lifetime. Far above
# a person's logins (and an office behind one address); beyond it /authorize answers 429.
PENDING_AUTHORIZATIONS_PER_IP = "60 per minute; 600 per hour"
PENDING_AUTHORIZATIONS_PER_NETWORK = "200 per minute; 2000 per hour"

# --- Request rate limits (429 with Retry-After when exceeded) --------------------------------
RATELIMIT_ENABLED = True
RATELIMIT_LOGIN_PER_IP = "30 per minute; 300 per hour"
RATELIMIT_LOGIN_PER_NETWORK = "100 per minute"
RATELIMIT_PIN_PER_IP = "30 per minute"
RATELIMIT_ACTIVATION_PER_IP = "20 per minute"
# The forgotten-password form's POSTs, by address and by network (/24, /64); counted for every
# username alike, so that which one runs out first tells nothing.
RATELIMIT_PASSWORD_FORGOT_PER_IP = "10 per minute; 50 per hour"  # noqa: S105 (a limit)
RATELIMIT_PASSWORD_FORGOT_PER_NETWORK = "30 per minute; 200 per hour"  # noqa: S105 (a limit)
# Sessions ended on the sessions page (/account/sessions), by address.
RATELIMIT_ACCOUNT_SESSIONS_PER_IP = "30 per minute"
# Phone changes tried on the account page (/account/phone), by address. Its wrong current
# passwords count against the account's lockout as well (LOCKOUT_THRESHOLD).
RATELIMIT_ACCOUNT_PHONE_PER_IP = "10 per minute"
# Password changes tried on the account page (/account/password), by address. Its wrong
# current passwords count against the account's lockout as well (LOCKOUT_THRESHOLD).
RATELIMIT_ACCOUNT_PASSWORD_PER_IP = "10 per minute"  # noqa: S105 (a limit)
# Password attempts for one account from one network (/24, /64), counted before the password
# is checked. Exhausting it blocks only that network for that account; the login page says
# until when, for every name alike (known or not).
LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK = "10 per 15 minutes"

# --- Brute force ------------------------------------------------------------------------------
# Failed passwords on one account before its password step is locked for a while; failed PINs
# (over all its open logins and activations) before its PIN step is, with a lock of its own:
# then no PIN is sent or accepted, and the pages say until when.
LOCKOUT_THRESHOLD = 5
# First lock in seconds; it doubles with every further failure up to LOCKOUT_MAX_SECONDS (at
# most about 100 guesses a day, as NIST SP 800-63B asks). The lock does not apply from a
# network where the account signed in within TRUSTED_NETWORK_DAYS: guesses from elsewhere
# cannot lock the administrator out at her usual place.
LOCKOUT_BASE_SECONDS = 30
LOCKOUT_MAX_SECONDS = 900
# Consecutive failures (passwords and PINs counted apart, as above) after which the step stays
# locked for good, on every network, home or not (NIST SP 800-63B-4 3.2.2: at most 100). Only
# `idp users unlock` lifts it, or for the password a completed forgotten-password reset
# (/password/forgot: the link by mail and a PIN by SMS prove both, which a guesser lacks). The
# pages then say to contact ecotel support, never until when; the login page says so for every
# name alike. `idp users show` tells it ("hard": true), the audit log records it
# (lockout.hard_locked).
LOCKOUT_HARD_LIMIT = 100
TRUSTED_NETWORK_DAYS = 30

# --- Sessions ---------------------------------------------------------------------------------
# A login session ends after this many seconds without use...
SESSION_IDLE_TIMEOUT = 1800
# ...and at the latest this many seconds after the login.
SESSION_ABSOLUTE_TIMEOUT = 10 * 3600
# Cookie that carries the random session id (the database holds its hash). Production uses the
# __Host- prefix, which forces Secure, Path=/ and no Domain.
AUTH_COOKIE_NAME = "idp_session"
# Flask's own signed cookie (CSRF token and the login or activation in progress).
SESSION_COOKIE_NAME = "idp_flow"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = False

# --- Web --------------------------------------------------------------------------------------
# Send Strict-Transport-Security (production, behind TLS).
HSTS = False
# CSRF tokens live as long as the flow cookie; a form left open for hours still works.
WTF_CSRF_TIME_LIMIT = None
# Flask-WTF's extra HTTPS check demands a same-origin Referer, but our pages send
# Referrer-Policy: no-referrer, so browsers send none and every POST over HTTPS would fail.
# The check guards against cookies planted from a sibling host; the __Host- prefix of the
# production cookies already rules that out, and the CSRF token does the rest.
WTF_CSRF_SSL_STRICT = False
# Largest request body accepted, in bytes.
MAX_CONTENT_LENGTH = 64 * 1024
# Languages of the hosted pages, first is the default.
LANGUAGES = ["de", "en"]
BABEL_DEFAULT_LOCALE = "de"
BABEL_DEFAULT_TIMEZONE = "Europe/Berlin"
# Development-only pages (the outbox). Never on in production.
DEV_PAGES = False

# --- OpenID Connect ---------------------------------------------------------------------------
# Seconds an authorization code can be redeemed (single use in any case).
AUTHORIZATION_CODE_LIFETIME = 60
# Seconds a JWT access token (RFC 9068) is valid.
ACCESS_TOKEN_LIFETIME = 300
# Seconds an ID token is valid.
ID_TOKEN_LIFETIME = 600
# Absolute lifetime in seconds of a refresh token family; rotation does not extend it.
REFRESH_TOKEN_LIFETIME = 10 * 3600
# Seconds a rotated-in signing key is published in JWKS before it signs (longer than JWKS caching).
KEY_PUBLISH_LEAD_TIME = 3600
# Secret that encrypts signing keys at rest. Unset: derived from SECRET_KEY (changing that then
# makes the stored keys unusable: set the old one back, or `idp keys rotate`, whose new key then
# signs at once, as no stored key can).
KEY_ENCRYPTION_SECRET = None
# Seconds to wait for a relying party's back-channel logout endpoint. Deliveries connect directly
# (HTTP(S)_PROXY does not apply) and never to link-local or cloud metadata addresses.
BACKCHANNEL_LOGOUT_TIMEOUT = 3
# Back-channel logouts wait in the database (the logout outbox) until their relying party takes
# them, from whichever instance gets to them first. A failed try is repeated after this many
# seconds, doubled after each further failure up to the largest pause; a logout not taken within
# LOGOUT_GIVE_UP_AFTER seconds of the session's end is given up (an audit event, and
# idp_logout_deliveries_total{result="given_up"} to alert on).
LOGOUT_RETRY_FIRST_DELAY = 5
LOGOUT_RETRY_MAX_DELAY = 3600
LOGOUT_GIVE_UP_AFTER = 86400
# Seconds between two looks of each gunicorn worker's poller for logouts that are due (a logout
# is tried at once after the session ends; the poller does the retries). 0: no poller (then
# run `idp logout deliver`, from cron say).
LOGOUT_POLL_INTERVAL = 5
# Seconds an access token of the client credentials grant (the ordering system's) is valid.
SERVICE_TOKEN_LIFETIME = 300

# --- Provisioning (SCIM 2.0 at {ISSUER}/scim/v2) -----------------------------------------------
# Products a customer can have under contract: the only SCIM entitlement values accepted, the
# values of the `entitlements` claim and of `idp clients create --require-entitlement`.
ENTITLEMENTS = ["cloud.phone"]
# Days a deprovisioned account (SCIM DELETE) keeps name, addresses and contracts for enquiries
# before they are erased; 0 erases them at once. The row itself stays for the audit trail.
DEPROVISIONED_RETENTION_DAYS = 30
# Largest SCIM request body in bytes; a larger one is refused with 413 before it is read.
SCIM_MAX_BODY_BYTES = 16 * 1024
# Most resources one SCIM list response carries (count is capped to it).
SCIM_MAX_RESULTS = 100
