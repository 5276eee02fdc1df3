"""Development: a fixed, loudly fake secret, SQLite, and senders that print to the console."""

SECRET_KEY = "development-only-secret-do-not-use-in-production"  # noqa: S105
AUDIT_KEY = "development-only-audit-key-do-not-use-in-production"
MAIL_BACKEND = "file"
SMS_BACKEND = "file"
DEV_PAGES = True
# The demo's addresses (idp demo sets its own ports).
ISSUER = "http://127.0.0.1:5000"
PORTAL_URL = "http://127.0.0.1:5001/"
