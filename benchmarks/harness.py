"""What every benchmark scenario shares: the targets, the driver's context, workers, events.

A target is one configuration under test (STOCK, GENERATED, PROFILE): how to start its
worker and how to publish to it. Run inside the rendered service's venv (driver.py), so
every target uses the service's own celery, kombu and redis-py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import traceback
from pathlib import Path
from typing import Any

import bench_bodies
import redis
from machine import busy_percent, cpu_times, loadavg, steal_percent
from support.processes import Process, Registry, WaitTimeout, wait_for
from support.servers import HOST

BENCH_DIR = Path(__file__).resolve().parent
# Celery logs this line when a worker consumes (both configurations log at INFO).
READY_MARK = " ready."
# Flower's basic auth in every booted service of the benchmark (user:password).
FLOWER_AUTH = "bench:bench-password"


class BenchError(RuntimeError):
    """A benchmark step failed or timed out."""


# --------------------------------------------------------------------------- targets


class Target:
    """How to start a worker of one configuration and how to publish to it."""

    name: str
    short_queue: str
    long_queue: str

    def __init__(self, ctx: Context, broker_url: str, events_db: int) -> None:
        self.ctx = ctx
        self.broker_url = broker_url
        self.events_url = f"redis://{HOST}:{ctx.redis_port}/{events_db}"
        self.events = redis.Redis.from_url(self.events_url)
        self._producer = None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        env["BENCH_REDIS_URL"] = self.events_url
        env.update(extra)
        return env

    def flush(self) -> None:
        """Empty the broker database and the events database of this target."""
        self.events.flushdb()
        if self.broker_url.startswith("redis://"):
            redis.Redis.from_url(self.broker_url).flushdb()

    def send(self, name: str, args: list, queue: str) -> None:
        self.producer().send_task(name, args=args, queue=queue)

    def send_many(self, name: str, args_list: list[list], queue: str) -> None:
        """Publish as the service's tasks do: result ignored (task_ignore_result=True).

        `send_task` does not read task_ignore_result: without ignore_result=True an app with
        a result backend (GENERATED's) subscribes to, then unsubscribes from, each task's
        result channel, ~0.2 ms a publish the service's own `apply_async` never pays.
        """
        app = self.producer()
        with app.producer_or_acquire() as producer:
            for args in args_list:
                app.send_task(name, args=args, queue=queue, producer=producer, ignore_result=True)

    def events_list(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.events.lrange(bench_bodies.EVENTS, 0, -1)]

    def ready_count(self) -> int | None:
        """Ready messages in the short queue (RabbitMQ only; Redis: None)."""
        if self.broker_url.startswith("redis://"):
            return None
        with self.producer().connection_for_write() as connection:
            channel = connection.channel()
            try:
                return channel.queue_declare(queue=self.short_queue, passive=True).message_count
            finally:
                channel.close()

    def parked(self) -> dict[str, int] | None:
        """Messages waiting in the broker: ready in the queues, unacked (Redis only)."""
        if not self.broker_url.startswith("redis://"):
            return None
        broker = redis.Redis.from_url(self.broker_url)
        return {
            "ready": sum(broker.llen(q) for q in {self.short_queue, self.long_queue}),
            "unacked": broker.hlen("unacked"),
        }


class Stock(Target):
    name = "stock"
    short_queue = "celery"
    long_queue = "long"

    def worker_argv(self, queues: list[str] | None, hostname: str) -> list[str]:
        argv = [self.ctx.bin("celery"), "-A", "bench_stock", "worker", "-c", "2"]
        argv += ["--loglevel", "INFO", "--hostname", f"{hostname}@%h"]
        if queues:
            argv += ["--queues", ",".join(queues)]
        return argv

    def worker_env(self, **extra: str) -> dict[str, str]:
        return self.env(BENCH_BROKER_URL=self.broker_url, **extra)

    def producer(self):
        if self._producer is None:
            from celery import Celery

            self._producer = Celery("bench_stock_producer", broker=self.broker_url)
        return self._producer


class Profile(Stock):
    """Diagnostic: a plain app with the service's settings profile (bench_profile.py)."""

    name = "profile"
    short_queue = "default"
    long_queue = "jobs"

    def worker_argv(self, queues: list[str] | None, hostname: str) -> list[str]:
        argv = super().worker_argv(queues, hostname)
        argv[argv.index("bench_stock")] = "bench_profile"
        return argv

    def worker_env(self, **extra: str) -> dict[str, str]:
        return super().worker_env(BENCH_PACKAGE=self.ctx.plan["package"], **extra)

    def producer(self):
        if self._producer is None:
            import importlib

            from celery import Celery

            routing = importlib.import_module(f"{self.ctx.plan['package']}.celery.routing")
            self._producer = Celery("bench_profile_producer", broker=self.broker_url)
            self._producer.conf.update(routing.routing_settings())
        return self._producer


class Generated(Target):
    name = "generated"
    short_queue = "default"
    long_queue = "jobs"

    def __init__(self, ctx: Context, broker_url: str, events_db: int, results_db: int):
        super().__init__(ctx, broker_url, events_db)
        self.results_url = f"redis://{HOST}:{ctx.redis_port}/{results_db}"

    def worker_argv(self, queues: list[str] | None, hostname: str) -> list[str]:
        """The service's own worker command, with the benchmark's tasks included."""
        argv = list(self.ctx.commands["worker"]["default"])
        argv[0] = self.ctx.bin(argv[0])
        if queues:
            argv[argv.index("--queues") + 1] = ",".join(queues)
        argv[argv.index("--hostname") + 1] = f"{hostname}@%h"
        return [*argv, "--include", "bench_service_tasks"]

    def worker_env(self, **extra: str) -> dict[str, str]:
        return self.env(
            BROKER_URL=self.broker_url,
            RESULT_BACKEND_URL=self.results_url,
            DATABASE_URL=f"sqlite:///{self.ctx.work / 'worker.db'}",
            WORKER_HEARTBEAT_FILE=str(self.ctx.work / f"hb-{time.monotonic_ns()}"),
            # Several workers at once on one host: no metrics listener (the counters still
            # count), and none on anything but loopback; each its own metric files.
            **{
                "METRICS_PORT": "0",
                "METRICS_ADDRESS": HOST,
                "METRICS_DIR": str(self.ctx.work / "metrics"),
                **extra,
            },
        )

    def producer(self):
        if self._producer is None:
            raise BenchError("make_generated_producer() was not called")
        return self._producer


class Observed(Generated):
    """GENERATED as deployed: JSON logs and a metrics listener (issue 11's cost row, "on")."""

    name = "observed"

    def worker_env(self, **extra: str) -> dict[str, str]:
        from support.servers import free_port

        return super().worker_env(
            **{"LOG_FORMAT": "json", "METRICS_PORT": str(free_port()), **extra}
        )


class Dark(Generated):
    """GENERATED with observability off: text logs and METRICS_ENABLED=false (the cost row's
    "off"): no listener, no signal handlers, nothing counted."""

    name = "dark"

    def worker_env(self, **extra: str) -> dict[str, str]:
        return super().worker_env(**{"LOG_FORMAT": "text", "METRICS_ENABLED": "false", **extra})


class Context:
    """Paths, ports and the service's commands for one driver run."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.svc = Path(plan["service_dir"])
        self.work = Path(plan["work_dir"])
        self.work.mkdir(parents=True, exist_ok=True)
        self.redis_port = plan["redis_port"]
        self.venv_bin = self.svc / ".venv" / "bin"
        self.registry = Registry(self.work / "logs")
        self.base_env = {
            "PATH": f"{self.venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(BENCH_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LOG_LEVEL": "INFO",
        }
        self.commands = json.loads(
            subprocess.run(
                [self.bin("python"), "-m", f"{plan['package']}.entrypoints"],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=self.svc,
                env=self.base_env,
            ).stdout
        )

    def bin(self, name: str) -> str:
        path = self.venv_bin / name
        return str(path) if path.exists() else name


def make_generated_producer(target: Generated, package: str, time_limit: int | None) -> None:
    """Build the service's own broker-only app (the one Flower uses) as the producer."""
    import importlib

    environ = {"BROKER_URL": target.broker_url, "RESULT_BACKEND_URL": target.results_url}
    if time_limit:
        environ["TASK_TIME_LIMIT"] = str(time_limit)
    apps = importlib.import_module(f"{package}.celery.apps")
    target._producer = apps.create_broker_celery_app(environ)


# --------------------------------------------------------------------------- helpers


def launch_worker(ctx: Context, target: Target, hostname: str, queues=None, **env: str) -> Process:
    """Start a worker and return at once (wait_ready() waits for it)."""
    return ctx.registry.start(
        f"{target.name}-{hostname}",
        target.worker_argv(queues, hostname),
        env=target.worker_env(**env),
        cwd=ctx.svc,
    )


def wait_ready(ctx: Context, target: Target, proc: Process, hostname: str) -> float:
    """Wait until a launched worker logs that it is ready; return seconds since its start."""
    try:
        wait_for(
            lambda: READY_MARK in proc.log_text() or not proc.alive(),
            timeout=60,
            what=f"{target.name} worker {hostname} to be ready",
            interval=0.05,
        )
    except WaitTimeout:
        ctx.registry.stop(proc)
        raise
    if not proc.alive():
        raise BenchError(f"{target.name} worker {hostname} exited:\n{proc.tail()}")
    return time.time() - proc.started


def start_worker(
    ctx: Context, target: Target, hostname: str, queues=None, **env: str
) -> tuple[Process, float]:
    """Start a worker and wait until it logs that it is ready; return (proc, seconds)."""
    proc = launch_worker(ctx, target, hostname, queues, **env)
    return proc, wait_ready(ctx, target, proc, hostname)


def events_by_token(events: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {}
    for event in sorted(events, key=lambda e: e["t"]):
        entry = out.setdefault(event["token"], {"start": [], "end": [], "pid": []})
        entry[event["kind"]].append(event["t"])
        if event["kind"] == "start":
            entry["pid"].append(event["pid"])
    return out


def section(name: str):
    """Context manager that records load and CPU steal around a scenario."""

    @contextlib.contextmanager
    def manager(store: dict[str, Any]):
        before, load_before = cpu_times(), loadavg()
        started = time.time()
        print(f"[bench] {name} ...", flush=True)
        try:
            yield
        finally:
            after = cpu_times()
            store.setdefault("load", {})[name] = {
                "seconds": round(time.time() - started, 1),
                "steal_percent": steal_percent(before, after),
                "cpu_busy_percent": busy_percent(before, after),
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }
            print(f"[bench] {name} done in {time.time() - started:.0f} s", flush=True)

    return manager


def guarded(errors: list, name: str, func, *args, **kwargs):
    """Run one measurement; record (do not raise) its failure so the rest still runs."""
    try:
        return func(*args, **kwargs)
    except Exception as error:  # a failed scenario is reported, never hidden
        print(f"[bench] {name} FAILED: {error}", flush=True)
        errors.append(
            {
                "scenario": name,
                "error": f"{type(error).__name__}: {error}",
                "trace": traceback.format_exc()[-3000:],
            }
        )
        return None
