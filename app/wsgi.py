"""WSGI entry point: `gunicorn app.wsgi:app`. Gunicorn's gevent worker monkey-patches before it
imports this module (see gunicorn.conf.py), so nothing here needs to."""
from app import create_app

app = create_app()
