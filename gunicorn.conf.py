"""Gunicorn settings for aiserver (`gunicorn -c gunicorn.conf.py app.wsgi:app`).

Read from the environment and `.env`. This file must not import `app`: the gevent worker
monkey-patches when it starts, and the application (with ssl, sockets, SDKs) is imported after.
"""
import os

from dotenv import load_dotenv

load_dotenv(os.environ.get("DOTENV_PATH") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env"))

bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '5001'}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_WORKERS") or 2)
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS") or 1000)
timeout = 60
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT_S") or 30)
keepalive = 75
accesslog = None
errorlog = "-"
loglevel = "info"
proc_name = "aiserver-web"


def post_worker_init(worker):
    """PostgreSQL under gevent: make psycopg2 yield to other greenlets while it waits on the server."""
    if (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://")):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
