"""gunicorn -c gunicorn.conf.py wsgi:app, in a checkout: the settings are the package's
(idp/gunicorn_conf.py), which the installed command uses as python:idp.gunicorn_conf."""

from idp.gunicorn_conf import *  # noqa: F403
