"""The discovery document (OpenID Connect Discovery 1.0): what the provider offers, rendered
once per process since it depends on configuration only."""

import json

from idp import policy
from idp.authn import factors
from idp.oidc import server as oauth
from idp.oidc.authorization import RESPONSE_MODES


def discovery_document(config, amr_values: list[str]) -> dict:
    issuer = config["ISSUER"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/end_session",
        "scopes_supported": list(policy.SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": list(RESPONSE_MODES),
        "grant_types_supported": list(oauth.GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(policy.ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": oauth.TOKEN_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": oauth.TOKEN_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": oauth.SECRET_METHODS,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "azp",
            "at_hash",
            *[claim for claims in policy.CLAIMS_BY_SCOPE.values() for claim in claims],
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": [policy.ACR],
        # Not in Discovery 1.0's list, but what relying parties look for (as with Keycloak's
        # and others'): which amr values (RFC 8176) an ID token of ours can carry.
        "amr_values_supported": amr_values,
        "prompt_values_supported": ["none", "login"],
        "ui_locales_supported": list(config["LANGUAGES"]),
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }


def precompute_discovery(app) -> None:
    """Discovery depends on configuration only: render it once per process."""
    document = discovery_document(app.config, factors.amr_values_supported(app))
    app.extensions["idp.discovery"] = json.dumps(document).encode()
