"""Publish rate: STOCK's and GENERATED's producers in short interleaved blocks.

The throughput scenario also times its enqueue (N tasks, once per repetition, right after
another configuration's worker stopped), but a 5,000-task block minutes apart from the other
configuration's measures the machine's drift as much as the producer. Here both producers
publish in the same stretch of seconds: blocks of `publish_block` tasks, STOCK and GENERATED
alternating (the order flips each round), each queue emptied after its block. The goal row
is the median of the per-round ratios (GENERATED / STOCK), paired so that a slow second slows
both sides of one ratio.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from harness import Target, section

# Published first by each producer, not timed: its connection and channel are set up.
WARM_UP = 100


def block(target: Target, n: int) -> float:
    """Publish n no-op tasks through the target's producer; return tasks/s (queue emptied)."""
    target.flush()
    started = time.perf_counter()
    target.send_many("bench.noop", [[n]] * n, target.short_queue)
    rate = n / (time.perf_counter() - started)
    target.flush()
    return round(rate, 1)


def measure(stock: Target, generated: Target, cfg: dict, out: dict[str, Any]) -> None:
    """Interleaved publish blocks of both producers; per-round rates and their ratios."""
    rounds, n = cfg["publish_rounds"], cfg["publish_block"]
    runs: dict[str, list[float]] = {stock.name: [], generated.name: []}
    with section("publish")(out):
        for target in (stock, generated):
            block(target, WARM_UP)
        for index in range(rounds):
            order = (stock, generated) if index % 2 == 0 else (generated, stock)
            for target in order:
                runs[target.name].append(block(target, n))
    ratios = [round(g / s, 3) for s, g in zip(runs[stock.name], runs[generated.name], strict=True)]
    out["publish"] = {
        "block_tasks": n,
        "rounds": rounds,
        "tasks_per_s": runs,
        "paired_ratios": ratios,
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
    }
