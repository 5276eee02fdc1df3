"""The application gunicorn serves: gunicorn -c python:idp.gunicorn_conf idp.wsgi:app"""

from idp import create_app

# Serving only: `idp db upgrade` migrates, beforehand.
app = create_app(serving_only=True)
