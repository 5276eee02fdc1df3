"""The development outbox exists only where development pages are on, never in production."""

from tests.conftest import invite


def test_outbox_lists_messages_newest_first_with_clickable_links(make_app):
    app = make_app(DEV_PAGES=True)
    invite(app, username="anna")
    invite(app, username="bert")
    page = app.test_client().get("/_dev/outbox")
    assert page.status_code == 200
    assert page.text.index("bert@example.com") < page.text.index("anna@example.com")
    assert '<a href="http://localhost/activate/' in page.text


def test_outbox_escapes_what_it_shows(make_app):
    app = make_app(DEV_PAGES=True)
    invite(app, username="anna", name="<script>alert(1)</script>")
    page = app.test_client().get("/_dev/outbox")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text


def test_no_outbox_without_development_pages(app):
    assert app.test_client().get("/_dev/outbox").status_code == 404


def test_production_refuses_development_pages():
    import pytest

    from idp import create_app
    from idp.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="DEV_PAGES"):
        create_app(
            "production",
            {
                "SECRET_KEY": "x" * 40,
                "AUDIT_KEY": "k" * 40,
                "ISSUER": "https://login.example.com",
                "PORTAL_URL": "https://portal.example.com/",
                "ALLOW_SQLITE": True,
                "VONAGE_API_KEY": "key",
                "VONAGE_API_SECRET": "secret",
                "DEV_PAGES": True,
            },
        )
