"""gunicorn wsgi:app, in a checkout: the package's idp.wsgi, which an installation serves."""

from idp.wsgi import app  # noqa: F401
