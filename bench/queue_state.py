"""The benchmark's own job queue in Redis, read or removed with aiserver's own huey and limiter settings.

    QUEUE_NAME=scale-bench-1a2b REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/queue_state.py rounds
    QUEUE_NAME=scale-bench-1a2b REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/queue_state.py delete

It runs in aiserver's venv (the bench venv has neither huey nor redis), from the checkout's root.
`rounds` prints, as JSON, the round ids of the `deploy.run_round` jobs waiting in the queue (the
messages decoded as the worker would: `make_huey` of the same settings). `delete` removes that queue's
keys (huey's queue, schedule, results, counters and locks) and the rate limiter's keys, which
QUEUE_NAME prefixes: the keys of this queue name only, nothing else in the Redis database.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app.core.jobqueue import make_huey  # noqa: E402

RUN_ROUND = "deploy.run_round"  # huey prefixes it with the module: app.deployments.jobs.deploy.run_round


def bench_huey():
    name = os.environ["QUEUE_NAME"]
    if not name.startswith("scale-bench-"):  # never another queue's keys
        raise SystemExit(f"QUEUE_NAME {name!r} is not a benchmark's queue (scale-bench-...)")
    return make_huey({"QUEUE_NAME": name, "REDIS_URL": os.environ["REDIS_URL"], "QUEUE_OUTAGE_LOG_S": 60})


def queued_rounds(huey) -> list[int]:
    messages = [huey.serializer.deserialize(item) for item in huey.storage.enqueued_items()]
    return [message.args[0] for message in messages if message.name.endswith(RUN_ROUND)]


def delete_keys(huey) -> int:
    """Remove the queue's and the limiter's keys of QUEUE_NAME; how many limiter keys there were."""
    huey.flush()
    redis = huey.storage.conn
    limiter_keys = list(redis.scan_iter(match=f"*LIMITER/{os.environ['QUEUE_NAME']}/*", count=1000))
    if limiter_keys:
        redis.delete(*limiter_keys)
    return len(limiter_keys)


def main(argv: list[str]) -> int:
    if argv[1:] == ["rounds"]:
        print(json.dumps(queued_rounds(bench_huey())))
    elif argv[1:] == ["delete"]:
        print(json.dumps({"limiter_keys_deleted": delete_keys(bench_huey())}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
