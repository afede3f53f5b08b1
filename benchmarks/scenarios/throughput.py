"""Throughput: N no-op tasks queued before the worker starts; one worker (-c 2) drains them."""

from __future__ import annotations

import time
from typing import Any

from harness import Context, Target, guarded, section, start_worker
from support.processes import wait_for


def throughput(ctx: Context, target: Target, n: int) -> dict[str, Any]:
    """N no-op tasks queued first, then one worker (-c 2) drains them."""
    target.flush()
    t0 = time.perf_counter()
    target.send_many("bench.noop", [[n]] * n, target.short_queue)
    enqueue_s = time.perf_counter() - t0
    proc, ready_s = start_worker(ctx, target, "tp")
    try:
        wait_for(
            lambda: target.events.get("bench:last"),
            timeout=max(60.0, n / 20),
            what=f"{target.name} to finish {n} no-op tasks",
            interval=0.02,
        )
        first = float(target.events.get("bench:first"))
        last = float(target.events.get("bench:last"))
    finally:
        ctx.registry.stop(proc)
    return {
        "tasks_per_s": round((n - 1) / (last - first), 1),
        "incl_startup_tasks_per_s": round(n / (last - proc.started), 1),
        "worker_ready_s": round(ready_s, 2),
        "enqueue_tasks_per_s": round(n / enqueue_s, 1),
    }


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
