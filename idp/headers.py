"""Security headers on every response, and no caching of anything personal."""

from flask import Flask, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def install_security_headers(app: Flask) -> None:
    hsts = app.config["HSTS"]

    @app.after_request
    def add_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if hsts:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Pages carry CSRF tokens, names and phone hints: never stored by any cache. Public,
        # cacheable responses (static files, discovery, JWKS) set their own Cache-Control.
        if "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        return response
