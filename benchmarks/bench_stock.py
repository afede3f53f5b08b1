"""STOCK: a plain `Celery()` app with Celery's defaults and the benchmark's task bodies.

Only the broker URL is set (no result backend): early acks, prefetch multiplier 4, the
"celery" queue, Redis visibility timeout 3600 s. Run with
`celery -A bench_stock worker -c 2` and PYTHONPATH=benchmarks/.
"""

import os

import bench_bodies
from celery import Celery

app = Celery("bench_stock", broker=os.environ["BENCH_BROKER_URL"])
noop = app.task(name="bench.noop")(bench_bodies.noop)
sleep = app.task(name="bench.sleep")(bench_bodies.sleep)
