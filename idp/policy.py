"""The identity provider's fixed decisions, which are not settings: what scopes and claims
mean, what a login proves (acr, amr), which algorithms sign, and lifetimes that the protocols
or our defences fix. Each with why; the settings, which an operator may change, are in
config/default.py. This module imports nothing of the project: every layer may read it."""

# --- What a login proves ------------------------------------------------------------------------
# A password and a second factor: REFEDS MFA profile (the ID token's acr, discovery's
# acr_values_supported).
ACR = "https://refeds.org/profile/mfa"
# RFC 8176 method values: the password, then the factor's own (idp.authn.factors), then "mfa".
AMR_PASSWORD = "pwd"  # noqa: S105 (a method name, no secret)
AMR_MULTIPLE_FACTORS = "mfa"

# --- Scopes and the claims they release --------------------------------------------------------
SCOPES = ("openid", "profile", "email", "phone", "entitlements", "offline_access")
CLAIMS_BY_SCOPE = {
    "profile": ("name", "preferred_username"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "entitlements": ("entitlements",),
}
# Claims that the ID token carries too, not only userinfo: a relying party that admits only
# one product decides at sign-in.
ID_TOKEN_SCOPED_CLAIMS = ("entitlements",)
# What a service client (client_credentials) may ask for: the provisioning API.
SERVICE_SCOPES = ("scim",)

# --- Signing -----------------------------------------------------------------------------------
# ES256 signs ten times faster than RS256; RS256 only for relying parties that need it.
DEFAULT_ALG = "ES256"
ALGORITHMS = ("ES256", "RS256")

# --- Fixed lifetimes ---------------------------------------------------------------------------
# A logout token is posted at once (and signed afresh for a retry): a short life is enough.
LOGOUT_TOKEN_LIFETIME_SECONDS = 120
# Relying parties may cache discovery for an hour, the keys for five minutes (a new key is
# published before it signs).
DISCOVERY_MAX_AGE_SECONDS = 3600
JWKS_MAX_AGE_SECONDS = 300
# When every argon2 slot is taken: long enough for a burst to drain (Retry-After).
BUSY_RETRY_AFTER_SECONDS = 5
# A larger max_age (about 31 years) means the same; timedelta overflows near 10**14 days.
MAX_AGE_LIMIT_SECONDS = 10**9

# --- The SMS PIN ---------------------------------------------------------------------------------
# Six digits: one in a million per try, with a handful of tries per login and per account.
PIN_LENGTH = 6
