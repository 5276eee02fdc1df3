"""The demo's two relying parties, e:service and cloud.phone: small Flask apps that sign in
through the identity provider with Authlib's OpenID Connect client, exactly as a real portal
would (authorization code + PKCE, ID token checked, RP-initiated and back-channel logout)."""
