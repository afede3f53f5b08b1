"""STOCK with N queues: a plain `Celery()` app that declares the same queue names as a variant.

BENCH_QUEUES="default,jobs,..." (the rendered variant's QUEUES); `task_default_queue` is
"default", everything else is Celery's defaults. The baseline of the queue-growth rows.
"""

import os

import bench_bodies
from celery import Celery
from kombu import Queue

app = Celery("bench_stock_queues", broker=os.environ["BENCH_BROKER_URL"])
app.conf.task_queues = [Queue(name) for name in os.environ["BENCH_QUEUES"].split(",")]
app.conf.task_default_queue = "default"
noop = app.task(name="bench.noop")(bench_bodies.noop)
