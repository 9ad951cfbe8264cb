"""Gunicorn settings for profiling one aiserver worker without py-spy: the project's own
`gunicorn.conf.py`, plus a sampler in each worker. A real OS thread (not a greenlet) wakes every
`PROFILE_INTERVAL_MS` (default 1), reads the worker's main thread's CPU clock and charges the CPU
it used since the last look to the Python stack it is running now (`sys._current_frames`); so each
stack's figure is microseconds of CPU, not a count of samples. `kill -USR2 <worker pid>` writes them
to `$PROFILE_DIR/stacks-<pid>.txt` (default /tmp), one `file:line:function;...;... microseconds`
line per stack, for `bench/profile_layers.py`, and starts counting afresh: send it once after a
warm-up (which pays for the SDK's import at the first call) and once after the load to profile.

Why not a `SIGPROF` timer (the first version): under gevent most of its signals never reached the
Python handler (25-100 samples in 8 s of a busy worker, where the timer asked for thousands), and
which ones did was not known. The thread needs the GIL to look, so the worker's switch interval is
shortened to 0.2 ms here: the main thread hands the GIL over at its next check, where it stands.
CPU spent in the hub between Python frames lands on the frame last on top ("gevent hub and other").

    env <aiserver's bench environment> WEB_WORKERS=1 taskset -c 0 \\
        .venv/bin/gunicorn --config bench/profile_gunicorn.conf.py app.wsgi:app
"""
import collections
import os
import signal
import sys
import time

_project = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gunicorn.conf.py")
_settings = {"__file__": _project, "__name__": "gunicorn_conf"}
with open(_project) as _f:
    exec(compile(_f.read(), _project, "exec"), _settings)
globals().update({k: v for k, v in _settings.items() if not k.startswith("__")})

_stacks: collections.Counter = collections.Counter()
_project_post_worker_init = _settings["post_worker_init"]


def _stack(frame) -> tuple:
    parts = []
    while frame is not None:
        code = frame.f_code
        parts.append(f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}")
        frame = frame.f_back
    return tuple(reversed(parts)) or ("<no Python frame>",)


def _sampler(main_ident: int, interval: float, sleep) -> None:
    clock = time.pthread_getcpuclockid(main_ident)
    last = time.clock_gettime(clock)
    while True:
        sleep(interval)
        frame = sys._current_frames().get(main_ident)
        now = time.clock_gettime(clock)
        used, last = now - last, now
        if used > 0:
            _stacks[_stack(frame)] += round(used * 1e6)


def _dump(signum, frame):
    path = os.path.join(os.environ.get("PROFILE_DIR", "/tmp"), f"stacks-{os.getpid()}.txt")
    counted = list(_stacks.items())
    _stacks.clear()
    with open(path, "w") as f:
        for stack, micros in counted:
            f.write(";".join(stack) + f" {micros}\n")


def post_worker_init(worker):
    from gevent import monkey

    _project_post_worker_init(worker)
    signal.signal(signal.SIGUSR2, _dump)
    sys.setswitchinterval(1e-6)
    main_ident = monkey.get_original("_thread", "get_ident")()
    start_thread = monkey.get_original("_thread", "start_new_thread")
    interval = float(os.environ.get("PROFILE_INTERVAL_MS", "1")) / 1000
    start_thread(_sampler, (main_ident, interval, monkey.get_original("time", "sleep")))
