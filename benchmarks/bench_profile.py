"""PROFILE (diagnostic): a plain Celery app plus the rendered service's settings profile.

`hardened_settings()` + routing from the service, but none of the service's app code
(no Flask app context per task, no worker hooks): it separates the cost of the settings
from the cost of the service's task base class. Only the throughput scenario uses it.
"""

import importlib
import os

import bench_bodies
from celery import Celery

_package = os.environ.get("BENCH_PACKAGE", "example_service")
_profile = importlib.import_module(f"{_package}.celery.profile")
_routing = importlib.import_module(f"{_package}.celery.routing")

app = Celery("bench_profile", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(_profile.hardened_settings("redis", _profile.HARD_TIME_LIMIT))
app.conf.update(_routing.routing_settings())
noop = app.task(name="bench.noop")(bench_bodies.noop)
sleep = app.task(name="bench.sleep")(bench_bodies.sleep)
