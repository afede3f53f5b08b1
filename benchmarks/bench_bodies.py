"""The task bodies both configurations run: the same functions, registered twice.

`bench_stock` registers them on a plain `Celery()` app; `bench_service_tasks` registers them
with `@shared_task` on the generated worker's app (so they run as the service's own tasks do,
inside its task base class). Each body writes what it did to Redis (BENCH_REDIS_URL), one
short command per event, so the harness can read start/end times from outside the worker.
"""

from __future__ import annotations

import json
import os
import time

import redis

EVENTS = "bench:events"
COUNT = "bench:count"
FIRST = "bench:first"
LAST = "bench:last"
_client: redis.Redis | None = None
_client_pid: int | None = None


def client() -> redis.Redis:
    """One connection per process (prefork children get their own after the fork)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        _client_pid = os.getpid()
    return _client


def record(kind: str, token: str, **extra: object) -> None:
    event = {"kind": kind, "token": token, "t": time.time(), "pid": os.getpid(), **extra}
    client().rpush(EVENTS, json.dumps(event))


def noop(total: int) -> None:
    """Count completions; remember when the first and the total-th completed."""
    done = client().incr(COUNT)
    if done == 1:
        client().set(FIRST, repr(time.time()))
    if done == total:
        client().set(LAST, repr(time.time()))


def sleep(token: str, seconds: float) -> None:
    """Record the start, sleep, record the end."""
    record("start", token)
    time.sleep(seconds)
    record("end", token)
