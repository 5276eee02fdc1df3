"""Tests: cheap argon2 so that the suite is fast; everything else as in production."""

TESTING = True
SECRET_KEY = "testing-secret"  # noqa: S105
AUDIT_KEY = "testing-audit-key-not-for-production-use"
MAIL_BACKEND = "file"
SMS_BACKEND = "file"
ARGON2_TIME_COST = 1
ARGON2_MEMORY_COST_KIB = 64
ARGON2_PARALLELISM = 1
ISSUER = "http://localhost"
PORTAL_URL = "http://127.0.0.1:5001/"
# Request limits and the SMS caps would trip over the many logins of unrelated tests; the tests
# of those defences set their own limits.
RATELIMIT_ENABLED = False
LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK = "10000 per minute"
SMS_LIMIT_PER_NUMBER = "10000 per day"
SMS_LIMIT_PER_ACCOUNT = "10000 per day"
SMS_BUDGET_MESSAGES = "10000 per hour"
PENDING_AUTHORIZATIONS_PER_IP = "10000 per minute"
PENDING_AUTHORIZATIONS_PER_NETWORK = "10000 per minute"
