"""What happens in a login that the capabilities above authn act on (idp.platform.hooks)."""

# (session, now): the session ended (logout, another login, a disabled account); its relying
# parties' tokens must end with it.
SESSION_ENDED = "session.ended"
