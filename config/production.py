"""Production: secure cookies with the __Host- prefix, HSTS, real senders.

The app refuses to start here without IDP_SECRET_KEY, with a development sender, with SQLite
unless IDP_ALLOW_SQLITE=true, or without https issuer and portal URLs off this machine unless
IDP_ALLOW_LOCAL_URLS=true.
"""

MAIL_BACKEND = "smtp"
SMS_BACKEND = "vonage"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_NAME = "__Host-idp_flow"
AUTH_COOKIE_NAME = "__Host-idp_session"
HSTS = True
