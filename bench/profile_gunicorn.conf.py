"""Gunicorn settings for profiling one aiserver worker without py-spy: the project's own
`gunicorn.conf.py`, plus a sampler in each worker. Every 2 ms of the worker's CPU time (`ITIMER_PROF`)
a `SIGPROF` handler counts the interrupted Python stack (a C call's time lands on the Python frame that
made it); `kill -USR2 <worker pid>` writes the counts to `$PROFILE_DIR/stacks-<pid>.txt` (default /tmp),
one `file:line:function;...;... count` line per stack, for `bench/profile_layers.py`.

    env <aiserver's bench environment> WEB_WORKERS=1 taskset -c 0 \\
        .venv/bin/gunicorn --config bench/profile_gunicorn.conf.py app.wsgi:app
"""
import collections
import os
import signal

_project = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gunicorn.conf.py")
_settings = {"__file__": _project, "__name__": "gunicorn_conf"}
with open(_project) as _f:
    exec(compile(_f.read(), _project, "exec"), _settings)
globals().update({k: v for k, v in _settings.items() if not k.startswith("__")})

_stacks: collections.Counter = collections.Counter()
_project_post_worker_init = _settings["post_worker_init"]


def _sample(signum, frame):
    parts = []
    while frame is not None:
        code = frame.f_code
        parts.append(f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}")
        frame = frame.f_back
    _stacks[tuple(reversed(parts))] += 1


def _dump(signum, frame):
    path = os.path.join(os.environ.get("PROFILE_DIR", "/tmp"), f"stacks-{os.getpid()}.txt")
    with open(path, "w") as f:
        for stack, count in _stacks.items():
            f.write(";".join(stack) + f" {count}\n")


def post_worker_init(worker):
    _project_post_worker_init(worker)
    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR2, _dump)
    signal.setitimer(signal.ITIMER_PROF, 0.002, 0.002)
