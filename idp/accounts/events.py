"""What happens to an account that the capabilities above accounts act on (idp.platform.hooks):
the login ends the steps and sessions the account had, the provider ends its tokens."""

# (user, now): the account was disabled or deprovisioned: nothing it opened may live on.
DISABLED = "account.disabled"
# (user, now): the phone that receives the PINs changed: a PIN already sent went to the old
# number, which may be the reason for the change.
PHONE_CHANGED = "account.phone_changed"
# (user, now): the password was reset: every session and token that the old one opened ends.
PASSWORD_RESET = "account.password_reset"  # noqa: S105 (an event name)
