"""How cost grows with the number of queues: one variant per driver run (run.py interleaves).

In the rendered variant with N queues: the publish rate of the service's broker-only app,
the `default` worker's start-up to ready, GET /health/celery (with that worker running) and
`python -m <pkg>.doctor`; against STOCK-N, a plain Celery app declaring the same N queues
(bench_stock_queues.py): its publish rate and worker start-up.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from harness import BenchError, Context, Generated, Stock, guarded, section, start_worker
from support.processes import wait_for
from support.servers import HOST, free_port

from scenarios import publish

TOKEN = "bench-diagnostics-token"


class StockQueues(Stock):
    name = "stock"
    short_queue = "default"

    def __init__(self, ctx: Context, broker_url: str, events_db: int, queues: list[str]):
        super().__init__(ctx, broker_url, events_db)
        self.queues = queues

    def worker_argv(self, queues, hostname):
        argv = super().worker_argv(queues, hostname)
        argv[argv.index("bench_stock")] = "bench_stock_queues"
        return argv

    def worker_env(self, **extra: str) -> dict[str, str]:
        return super().worker_env(BENCH_QUEUES=",".join(self.queues), **extra)

    def producer(self):
        if self._producer is None:
            from celery import Celery
            from kombu import Queue

            self._producer = Celery("bench_stock_queues_producer", broker=self.broker_url)
            self._producer.conf.task_queues = [Queue(name) for name in self.queues]
            self._producer.conf.task_default_queue = "default"
        return self._producer


def health_celery(ctx: Context, generated: Generated, calls: int) -> tuple[list[float], list]:
    """GET /health/celery `calls` times against a web of this variant; ms each."""
    port = free_port()
    web = ctx.commands["web"]
    env = generated.worker_env(
        SECRET_KEY="bench-secret-key-bench-secret-key",
        DIAGNOSTICS_TOKEN=TOKEN,
        WEB_BIND=f"{HOST}:{port}",
        WEB_WORKERS="1",
    )
    proc = ctx.registry.start("queues-web", [ctx.bin(web[0]), *web[1:]], env=env, cwd=ctx.svc)
    url = f"http://{HOST}:{port}/health/celery"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"http://{HOST}:{port}/health/live", timeout=2),
            timeout=60,
            what="queue-growth web to answer",
            interval=0.1,
        )
        samples, statuses = [], set()
        for _ in range(calls + 1):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    statuses.add(response.status)
            except urllib.error.HTTPError as error:
                # 503 names what is missing (queues without a consumer): still a full report.
                error.read()
                statuses.add(error.code)
            samples.append(round((time.perf_counter() - started) * 1000, 1))
        return samples[1:], sorted(statuses)  # the first call imports and connects
    finally:
        ctx.registry.stop(proc)


def doctor(ctx: Context, generated: Generated, calls: int) -> list[float]:
    env = generated.worker_env()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        completed = subprocess.run(
            [ctx.bin("python"), "-m", f"{ctx.plan['package']}.doctor"],
            cwd=ctx.svc,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if completed.returncode:
            raise BenchError(f"doctor exited {completed.returncode}:\n{completed.stderr[-2000:]}")
        samples.append(round((time.perf_counter() - started) * 1000, 1))
    return samples


def one_rep(ctx, generated, stock, cfg, rep) -> dict[str, Any]:
    q = cfg["queues_growth"]
    out: dict[str, Any] = {"queues": len(stock.queues)}
    order = ("stock", "generated") if rep % 2 == 0 else ("generated", "stock")
    for name in order:
        if name == "stock":
            out["stock_publish_per_s"] = publish.block(stock, q["publish_tasks"])
            proc, ready = start_worker(ctx, stock, f"qs{rep}", ["default"])
            ctx.registry.stop(proc)
            out["stock_worker_ready_s"] = round(ready, 2)
            continue
        out["publish_per_s"] = publish.block(generated, q["publish_tasks"])
        proc, ready = start_worker(ctx, generated, f"qg{rep}", ["default"])
        out["worker_ready_s"] = round(ready, 2)
        try:
            samples, statuses = health_celery(ctx, generated, q["health_calls"])
            out["health_celery_ms"] = statistics.median(samples)
            out["health_celery_statuses"] = statuses
        finally:
            ctx.registry.stop(proc)
        out["doctor_ms"] = statistics.median(doctor(ctx, generated, q["doctor_calls"]))
    return out


def measure(ctx: Context, cfg: dict, out: dict[str, Any]) -> None:
    import importlib

    from harness import make_generated_producer

    package = ctx.plan["package"]
    queues = list(importlib.import_module(f"{package}.celery.routing").QUEUES)
    port = ctx.redis_port
    generated = Generated(ctx, f"redis://{HOST}:{port}/1", events_db=3, results_db=2)
    make_generated_producer(generated, package, None)
    stock = StockQueues(ctx, f"redis://{HOST}:{port}/0", events_db=4, queues=queues)
    rep = ctx.plan.get("rep", 0)
    with section(f"queues_{len(queues)}")(out):
        out["queues_growth"] = guarded(
            out["errors"], f"queue growth {len(queues)}", one_rep, ctx, generated, stock, cfg, rep
        )
