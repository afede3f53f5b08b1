"""Throughput: N no-op tasks queued before the worker starts; one worker (-c 2) drains them.

Scaling: the same backlog drained by 1 and by 2 worker processes (-c 2 each) on the queue,
timed from the moment the last of them is ready: what a second replica adds on this host.
"""

from __future__ import annotations

import time
from typing import Any

from bench_bodies import COUNT, FIRST, LAST
from harness import Context, Target, guarded, launch_worker, section, start_worker, wait_ready
from support.processes import wait_for


def wait_for_last(target: Target, n: int, what: str) -> float:
    """Wait until the n-th no-op task has run; return when it did (Unix time)."""
    wait_for(
        lambda: target.events.get(LAST),
        timeout=max(60.0, n / 20),
        what=f"{what} to finish {n} no-op tasks",
        interval=0.02,
    )
    return float(target.events.get(LAST))


def throughput(ctx: Context, target: Target, n: int) -> dict[str, Any]:
    """N no-op tasks queued first, then one worker (-c 2) drains them."""
    target.flush()
    t0 = time.perf_counter()
    target.send_many("bench.noop", [[n]] * n, target.short_queue)
    enqueue_s = time.perf_counter() - t0
    proc, ready_s = start_worker(ctx, target, "tp")
    try:
        last = wait_for_last(target, n, target.name)
        first = float(target.events.get(FIRST))
    finally:
        ctx.registry.stop(proc)
    return {
        "tasks_per_s": round((n - 1) / (last - first), 1),
        "incl_startup_tasks_per_s": round(n / (last - proc.started), 1),
        "worker_ready_s": round(ready_s, 2),
        "enqueue_tasks_per_s": round(n / enqueue_s, 1),
    }


# The scaling backlog, in throughput backlogs: long enough that the workers' start is a small
# part of it (it is counted from when every worker is ready), short enough for the full run's
# 30 minutes.
SCALING_BACKLOG = 2


def scaled(ctx: Context, target: Target, n: int, workers: int) -> dict[str, Any]:
    """N no-op tasks queued first, then `workers` workers (-c 2 each) drain them together."""
    target.flush()
    target.send_many("bench.noop", [[n]] * n, target.short_queue)
    procs = []
    try:
        # Started together, so they become ready about together.
        for index in range(workers):
            procs.append(launch_worker(ctx, target, f"scale{index}"))
        for index, proc in enumerate(procs):
            wait_ready(ctx, target, proc, f"scale{index}")
        # Counted from here: every worker is ready, whatever the first ones drained before.
        started, done_before = time.time(), int(target.events.get(COUNT) or 0)
        last = wait_for_last(target, n, f"{target.name} x{workers}")
    finally:
        for proc in procs:
            ctx.registry.stop(proc)
    return {
        "workers": workers,
        "tasks_per_s": round((n - done_before) / (last - started), 1),
        "drained_before_all_ready": done_before,
    }


def measure_scaling(ctx: Context, targets: list[Target], cfg: dict, out: dict[str, Any]) -> None:
    """1 and 2 worker processes per queue, each target, order rotating per repetition."""
    runs = out.setdefault("scaling", {t.name: {"1": [], "2": []} for t in targets})
    with section("scaling")(out):
        for rep in range(cfg.get("scaling_reps", 1)):
            for target in targets if rep % 2 == 0 else targets[::-1]:
                for workers in (1, 2) if rep % 2 == 0 else (2, 1):
                    runs[target.name][str(workers)].append(
                        guarded(
                            out["errors"],
                            f"scaling {target.name} x{workers} {rep}",
                            scaled,
                            ctx,
                            target,
                            SCALING_BACKLOG * cfg["noop_tasks"],
                            workers,
                        )
                    )


def measure(ctx: Context, targets: list[Target], cfg: dict, out: dict[str, Any]) -> None:
    """Every repetition runs each target once; the order rotates from one to the next."""
    tp = out.setdefault("throughput", {target.name: [] for target in targets})
    with section("throughput")(out):
        for rep in range(cfg.get("throughput_reps", cfg["reps"])):
            # Rotate the order of the configurations from one repetition to the next.
            shift = rep % len(targets)
            order = targets[shift:] + targets[:shift]
            for target in order:
                tp[target.name].append(
                    guarded(
                        out["errors"],
                        f"throughput {target.name} {rep}",
                        throughput,
                        ctx,
                        target,
                        cfg["noop_tasks"],
                    )
                )
