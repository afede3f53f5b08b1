"""Run the benchmark scenarios inside the rendered service's venv; write raw results as JSON.

Started by run.py as `<service>/.venv/bin/python benchmarks/driver.py --plan plan.json`, so
STOCK and GENERATED use the same celery/kombu/redis-py, the service's own (run.py puts
tests/ on PYTHONPATH for the shared support package). Every process is started through
support.processes.Registry and stopped by PID, also when a scenario fails. The scenarios
are in scenarios/, one module each, run in the order below.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from harness import (
    Context,
    Dark,
    Generated,
    Observed,
    Profile,
    Stock,
    make_generated_producer,
)
from scenarios import (
    boot,
    head_of_line,
    http_path,
    publish,
    queue_growth,
    throughput,
    worker_loss,
)
from support.servers import HOST


def derived(package: str, cfg: dict) -> dict[str, int]:
    """The service's own visibility timeouts for the worker-loss time limit and its default."""
    profile = importlib.import_module(f"{package}.celery.profile")
    return {
        "loss_time_limit_s": cfg["loss"]["time_limit"],
        "loss_visibility_timeout_s": profile.visibility_timeout(cfg["loss"]["time_limit"]),
        "default_visibility_timeout_s": profile.visibility_timeout(profile.HARD_TIME_LIMIT),
    }


def run_rabbitmq(ctx: Context, plan: dict[str, Any], out: dict[str, Any]) -> None:
    """The RabbitMQ run: only the main-process kill of the generated worker."""
    cfg = plan["config"]
    generated = Generated(ctx, plan["amqp_url"], events_db=6, results_db=5)
    make_generated_producer(generated, plan["package"], cfg["loss"]["time_limit"])
    worker_loss.measure_rabbitmq(ctx, generated, cfg, out)


def run_redis(ctx: Context, plan: dict[str, Any], out: dict[str, Any]) -> None:
    """The Redis run: every scenario. Each target has Redis databases of its own."""
    cfg, package, port = plan["config"], plan["package"], ctx.redis_port
    stock = Stock(ctx, f"redis://{HOST}:{port}/0", events_db=4)
    generated = Generated(ctx, f"redis://{HOST}:{port}/1", events_db=3, results_db=2)
    make_generated_producer(generated, package, None)
    loss_generated = Generated(ctx, f"redis://{HOST}:{port}/7", events_db=8, results_db=9)
    make_generated_producer(loss_generated, package, cfg["loss"]["time_limit"])
    loss_stock = Stock(ctx, f"redis://{HOST}:{port}/10", events_db=11)
    out["derived"] = derived(package, cfg)
    profile = Profile(ctx, f"redis://{HOST}:{port}/12", events_db=13)
    observed = Observed(ctx, f"redis://{HOST}:{port}/14", events_db=15, results_db=5)
    make_generated_producer(observed, package, None)
    # run.py starts the bench's redis-server with 24 databases: 16 to 18 are this one's.
    dark = Dark(ctx, f"redis://{HOST}:{port}/16", events_db=17, results_db=18)
    make_generated_producer(dark, package, None)
    publish.measure(stock, generated, cfg, out)
    throughput.measure(ctx, [stock, generated, profile, observed, dark], cfg, out)
    throughput.measure_scaling(ctx, [stock, generated], cfg, out)
    head_of_line.measure(ctx, stock, generated, cfg, out)
    worker_loss.measure(ctx, loss_stock, loss_generated, cfg, out)
    boot.measure(ctx, generated, cfg, out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    plan = json.loads(Path(options.plan).read_text())
    ctx = Context(plan)
    out: dict[str, Any] = {"errors": []}

    def stop(signum, _frame):
        ctx.registry.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        if plan["mode"] == "rabbitmq":
            run_rabbitmq(ctx, plan, out)
        elif plan["mode"] == "http":
            http_path.measure(ctx, plan["config"], out)
        elif plan["mode"] == "queues":
            queue_growth.measure(ctx, plan["config"], out)
        else:
            run_redis(ctx, plan, out)
    finally:
        ctx.registry.stop_all()
        out["driver_rusage_children_cpu_s"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime, 1
        )
        Path(options.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
