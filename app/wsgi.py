"""WSGI entry point: `gunicorn app.wsgi:app`. Gunicorn's gevent worker monkey-patches before it
imports this module (see gunicorn.conf.py), so nothing here needs to.

The cyclic garbage collector is off while the app is built: the build makes some 280,000 objects that
live as long as the process, and the full collections their number sets off found almost no garbage
(about 120 objects) while costing a fifth of the start-up's CPU. `gc.freeze` then moves them out of
every later collection, so the collections made while serving scan only what requests make."""
import gc

from app import create_app

gc.disable()
try:
    app = create_app()
finally:
    gc.enable()
gc.freeze()
