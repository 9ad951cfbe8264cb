"""Background worker entry point: `huey_consumer app.worker.huey` (Supervisor's `[program:worker]`).

Building the app registers every job on its huey instance and binds the database, so jobs run
with the same configuration as the web process."""
from app import create_app

app = create_app()
huey = app.extensions["huey"]
