"""Prometheus metrics: one folder of metric files per role process, one listener per role.

gunicorn's workers and Celery's prefork children are separate processes: each writes its
samples to files (prometheus-client's multiprocess mode) in the folder its parent made, and
the parent (gunicorn's master, the worker's main process, beat) serves their sum on a port of
its own, never the web port. The service's metrics are created only after the folder is set
(prometheus_client picks its storage from it), hence the imports inside the functions.

The web's request metrics are here too: requests by route template and status, and latency.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Buckets of the request latency histogram, in seconds: a cache hit to a slow publish.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The route of a request that matched none (a 404): one label value, not one per path.
UNMATCHED_ROUTE = "<unmatched>"
# Any other method a client invents is counted as "other": labels stay a small set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def prepare_process_directory(base: str, role: str) -> str:
    """Give this process (and the processes it forks) an empty folder of metric files.

    The process that names the folder empties it; a process that finds the variable set
    (a gunicorn worker, a prefork child, a second app in one test run) keeps it.
    """
    if os.environ.get(MULTIPROCESS_VARIABLE):
        return os.environ[MULTIPROCESS_VARIABLE]
    directory = Path(base) / f"{role}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_VARIABLE] = str(directory)
    _use_the_folder()
    return str(directory)


def _use_the_folder() -> None:
    """Point an already imported prometheus_client at the folder, before any metric exists.

    The `celery` command imports Flower's plugin, and Flower imports prometheus_client, before
    the app module runs: its storage was chosen without the folder. Metrics read
    values.ValueClass when they are created, so choosing again now is enough, as long as no
    metric of the service was created before (they are all created after this, lazily).
    """
    values: Any = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()


def registry(*collectors: Any):
    """Return a registry of the sum over every process's files, plus extra collectors."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    combined = CollectorRegistry()
    MultiProcessCollector(combined)
    for collector in collectors:
        combined.register(collector)
    return combined


def start_listener(address: str, port: int, *collectors: Any):
    """Serve the metrics on address:port from a thread; return the server (None when port 0)."""
    if not port:
        return None
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=address, registry=registry(*collectors))
    except OSError as error:
        # The port is taken (two workers on one host): the role still works, unscraped.
        logger.error("metrics: cannot listen on %s:%s (%s); set METRICS_PORT", address, port, error)
        return None
    logger.info("metrics: listening on %s:%s", address, port)
    return server


def stop_listener(server) -> None:
    """Stop a listener start_listener returned."""
    if server is not None:
        server.shutdown()
        server.server_close()


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (its counters and histograms keep counting)."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def exposition(*collectors: Any) -> bytes:
    """Return the text a scrape would get (for tests and the doctor)."""
    from prometheus_client import generate_latest

    return generate_latest(registry(*collectors))


# --- the web ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpMetrics:
    requests: Any
    latency: Any


@functools.cache
def http_metrics() -> HttpMetrics:
    """Create the web's metrics once per process."""
    from prometheus_client import Counter, Histogram

    return HttpMetrics(
        requests=Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
        ),
        latency=Histogram(
            "http_request_duration_seconds",
            "Time from the request's start to its response, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
        ),
    )


def init_app(app) -> None:
    """Count every request and time it, labelled by its route template (never the raw path)."""
    from flask import g, request

    metrics = http_metrics()

    @app.before_request
    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe(response):
        started = g.pop("metrics_started", None)
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        method = request.method if request.method in METHODS else "other"
        metrics.requests.labels(method, route, str(response.status_code)).inc()
        if started is not None:
            elapsed = time.perf_counter() - started
            metrics.latency.labels(method, route).observe(elapsed)
        return response
