"""GENERATED: the benchmark's task bodies as tasks of the rendered service.

Imported by the service's own worker command with `--include bench_service_tasks`:
`@shared_task` binds them to the worker app, so they get its task base class (Flask app
context) and its hardened settings, exactly like the service's own tasks.
"""

import bench_bodies
from celery import shared_task

noop = shared_task(name="bench.noop")(bench_bodies.noop)
sleep = shared_task(name="bench.sleep")(bench_bodies.sleep)
