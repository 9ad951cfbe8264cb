"""Fake evaluator: the `evaluation_url` that deployments notify, on loopback.

Any `POST` path is an evaluation URL. Each path can be scripted with ``script(path, failures,
status)``: its first ``failures`` notifications are answered with ``status`` (503 by default),
then it answers `200 {"status": "ok"}`; ``failures=None`` fails every time (for deadline tests).
Unscripted paths accept at once. ``failures_default`` scripts every path not scripted itself.

Every notification is recorded (``notifications``: path, JSON body, time, status answered), and
``wait_for(predicate, timeout)`` waits for a matching accepted one.

Run it by hand: ``python -m tests.fakes.evaluator --port 8020 --failures 2``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Callable

from .server import FakeServer, Handler, RecordedRequest, run_until_interrupted


@dataclass(frozen=True)
class Notification:
    path: str
    body: Any
    at: float
    status: int

    @property
    def accepted(self) -> bool:
        return self.status == 200


class FakeEvaluator(FakeServer):
    def __init__(self, *, failures_default: int = 0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.failures_default = failures_default
        self._scripts: dict[str, tuple[int | None, int]] = {}
        self._seen: dict[str, int] = {}
        self._notifications: list[Notification] = []

    def script(self, path: str, failures: int | None, status: int = 503) -> None:
        with self._lock:
            self._scripts[path] = (failures, status)

    def url_for(self, path: str) -> str:
        return self.url + path

    @property
    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._notifications)

    def accepted(self, path: str | None = None) -> list[Notification]:
        return [n for n in self.notifications if n.accepted and (path is None or n.path == path)]

    def wait_for(self, predicate: Callable[[Notification], bool], timeout: float) -> Notification | None:
        with self._changed:
            self._changed.wait_for(lambda: any(n.accepted and predicate(n) for n in self._notifications), timeout)
            return next((n for n in self._notifications if n.accepted and predicate(n)), None)

    def print_notifications(self, describe: Callable[[Notification], str]) -> None:
        """Print a line (``describe`` writes it) for each notification as it arrives; the command-line
        watcher, run until interrupted."""
        while True:
            before = len(self.notifications)
            self.wait_until(lambda before=before: len(self.notifications) > before, 3600)
            for note in self.notifications[before:]:
                print(describe(note), flush=True)

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if request.method != "POST":
            return handler.send_json(405, {"error": "POST a notification here"})
        with self._changed:
            failures, status = self._scripts.get(request.path, (self.failures_default, 503))
            seen = self._seen.get(request.path, 0)
            self._seen[request.path] = seen + 1
            answer = status if failures is None or seen < failures else 200
            self._notifications.append(Notification(request.path, request.json, time.time(), answer))
            self._changed.notify_all()
        if answer == 200:
            handler.send_json(200, {"status": "ok"})
        else:
            handler.send_json(answer, {"error": "not now", "attempt": seen + 1})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.evaluator", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--failures", type=int, default=0, help="503s each path answers before accepting")
    args = parser.parse_args(argv)
    fake = FakeEvaluator(failures_default=args.failures, host=args.host, port=args.port).start()
    run_until_interrupted([fake], [f"evaluation_url: {fake.url}/notify"],
                          watch=lambda: fake.print_notifications(lambda n: f"{n.status} {n.path} {n.body}"))


if __name__ == "__main__":
    main()
