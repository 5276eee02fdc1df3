"""Security headers on every response, and no caching of anything personal."""

from flask import Flask, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def install_security_headers(app: Flask) -> None:
    defaults = [
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if app.config["HSTS"]:
        defaults.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    # Pages carry CSRF tokens, names and phone hints: never stored by any cache. Public,
    # cacheable responses (static files, discovery, JWKS) set their own Cache-Control.
    uncached = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]

    @app.after_request
    def add_headers(response: Response) -> Response:
        # Each header only where the view did not set its own. One pass over the names: a
        # setdefault per header scanned the list and raised a KeyError for each one missing.
        present = {name.lower() for name, _ in response.headers}
        missing = [(name, value) for name, value in defaults if name.lower() not in present]
        if "cache-control" not in present:
            missing += [(name, value) for name, value in uncached if name.lower() not in present]
        response.headers.extend(missing)
        return response
