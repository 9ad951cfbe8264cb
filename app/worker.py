"""Background worker entry point: `python -m app.worker` (Supervisor's `[program:worker]`).

Building the app registers every job on its huey instance (`app.deployments.jobs`) and binds the database, so
jobs run with the same configuration as the web process, and sets up tracing the same way (each
deployment round a trace of its own, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; README, "Traces").
The consumer runs QUEUE_WORKERS threads; nothing in this process is monkey-patched.
TERM stops it gracefully: running jobs get SHUTDOWN_TIMEOUT_S to finish (Supervisor's
`stopwaitsecs` is longer), then are interrupted. INT stops it at once. HUP restarts it in place,
re-reading the code and `.env`. `huey_consumer app.worker.huey` works too.
"""
import sys

from app import create_app

app = create_app()
huey = app.extensions["huey"]

SHUTDOWN_TIMEOUT_S = 50.0


def main() -> None:
    consumer = huey.create_consumer(workers=app.config["QUEUE_WORKERS"], worker_type="thread",
                                    periodic=True, max_delay=2.0, graceful_signal="TERM",
                                    shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    # On HUP huey re-executes `python *sys.argv`: keep that `-m app.worker`, not this file's path.
    sys.argv = ["-m", "app.worker"]
    consumer.run()


if __name__ == "__main__":
    main()
