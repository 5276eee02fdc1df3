"""Tests: cheap argon2 so that the suite is fast; everything else as in production."""

TESTING = True
SECRET_KEY = "testing-secret"  # noqa: S105
MAIL_BACKEND = "file"
SMS_BACKEND = "file"
ARGON2_TIME_COST = 1
ARGON2_MEMORY_COST_KIB = 64
ARGON2_PARALLELISM = 1
ISSUER = "http://localhost"
