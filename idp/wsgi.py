"""The application gunicorn serves: gunicorn -c python:idp.gunicorn_conf idp.wsgi:app"""

from idp import create_app

app = create_app()
