"""Head-of-line blocking: short tasks queued while long tasks hold a child or a worker."""

from __future__ import annotations

import time
from typing import Any

from harness import Context, Target, events_by_token, guarded, section, start_worker
from support.processes import wait_for


def ideal_starts(shorts, enqueued, busy_until, free_slots, durations):
    """Greedy schedule: each short (in enqueue order) takes the slot that frees first."""
    slots = list(busy_until) + [float("-inf")] * free_slots
    ideal = {}
    for token in sorted(shorts, key=lambda tok: enqueued[tok]):
        index = min(range(len(slots)), key=lambda i: slots[i])
        start = max(enqueued[token], slots[index])
        ideal[token] = start
        slots[index] = start + durations[token]
    return ideal


def head_of_line(ctx: Context, target: Target, scenario: str, cfg: dict) -> dict[str, Any]:
    """Short tasks queued while a long task holds a child (hol1) or a whole worker (hol3).

    hol1: one worker (-c 2) consumes both queues; 1 long task holds one child.
    hol3: W1 (-c 2) consumes both queues and runs 2 long tasks (both children busy);
          W2 (-c 2) consumes the short queue only and is idle.
    Extra wait of a short = its actual start - its start in a greedy schedule over the
    same free slots (the earliest moment any child could have run it).
    """
    target.flush()
    longs = 1 if scenario == "hol1" else 2
    workers = []
    try:
        w1, _ = start_worker(ctx, target, "w1", [target.short_queue, target.long_queue])
        workers.append(w1)
        if scenario == "hol3":
            w2, _ = start_worker(ctx, target, "w2", [target.short_queue])
            workers.append(w2)
        time.sleep(1.0)  # let every worker reach its consume loop
        long_tokens = [f"L{i}" for i in range(longs)]
        for token in long_tokens:
            target.send("bench.sleep", [token, cfg["long_s"]], target.long_queue)
        wait_for(
            lambda: (
                len({e["token"] for e in target.events_list() if e["kind"] == "start"}) >= longs
            ),
            timeout=20,
            what="the long tasks to start",
            interval=0.05,
        )
        enqueued = {}
        short_tokens = [f"S{i}" for i in range(cfg["shorts"])]
        for token in short_tokens:
            enqueued[token] = time.time()
            target.send("bench.sleep", [token, cfg["short_s"]], target.short_queue)
            time.sleep(cfg["gap_s"])
        wait_for(
            lambda: all(
                events_by_token(target.events_list()).get(t, {}).get("end")
                for t in short_tokens + long_tokens
            ),
            timeout=cfg["long_s"] + 30,
            what="every task of the head-of-line scenario to finish",
            interval=0.1,
        )
    finally:
        for proc in workers:
            ctx.registry.stop(proc)
    by_token = events_by_token(target.events_list())
    starts = {t: by_token[t]["start"][0] for t in short_tokens}
    durations = {t: by_token[t]["end"][0] - by_token[t]["start"][0] for t in short_tokens}
    busy_until = [by_token[t]["end"][0] for t in long_tokens]
    free_slots = 2 * len(workers) - longs
    ideal = ideal_starts(short_tokens, enqueued, busy_until, free_slots, durations)
    return {
        "shorts": [
            {
                "token": t,
                "wait_s": round(starts[t] - enqueued[t], 3),
                "extra_wait_s": round(starts[t] - ideal[t], 3),
            }
            for t in short_tokens
        ],
        "max_extra_wait_s": round(max(starts[t] - ideal[t] for t in short_tokens), 3),
    }


def measure(ctx: Context, stock: Target, generated: Target, cfg: dict, out: dict[str, Any]) -> None:
    """Each scenario of the plan; the two configurations alternate within every repetition."""
    hol = out.setdefault("hol", {})
    for scenario in cfg["hol_scenarios"]:
        runs = hol.setdefault(scenario, {"stock": [], "generated": []})
        with section(scenario)(out):
            for rep in range(cfg["reps"]):
                for target in (stock, generated) if rep % 2 == 0 else (generated, stock):
                    runs[target.name].append(
                        guarded(
                            out["errors"],
                            f"{scenario} {target.name} {rep}",
                            head_of_line,
                            ctx,
                            target,
                            scenario,
                            cfg["hol"],
                        )
                    )
