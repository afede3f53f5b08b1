"""Worker loss: SIGKILL a busy prefork child or the worker's main process mid-task."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

from harness import BenchError, Context, Target, events_by_token, guarded, section, start_worker
from support.processes import WaitTimeout, children, wait_for


def worker_loss(
    ctx: Context, target: Target, kill: str, cfg: dict, window: float, hostname: str
) -> dict[str, Any]:
    """K sleep tasks on one worker (-c 2); SIGKILL a busy child or the main process.

    After a main-process kill a replacement worker starts at once (what a supervisor does).
    lost = tasks never completed within the window; parked = still in the broker then.
    """
    target.flush()
    time_limit = str(cfg["time_limit"])
    tokens = [f"K{i}" for i in range(cfg["tasks"])]
    proc, _ = start_worker(ctx, target, hostname, TASK_TIME_LIMIT=time_limit)
    replacement = None
    result: dict[str, Any] = {}
    try:
        target.send_many("bench.sleep", [[t, cfg["task_s"]] for t in tokens], target.short_queue)
        wait_for(
            lambda: sum(1 for e in target.events_list() if e["kind"] == "start") >= 2,
            timeout=20,
            what="two tasks to start",
            interval=0.05,
        )
        time.sleep(0.5)
        if kill == "child":
            running = events_by_token(target.events_list())
            first = min(running.values(), key=lambda entry: entry["start"][0])
            victim = first["pid"][0]
            if victim not in children(proc.pid):
                raise BenchError(f"pid {victim} is not a pool child of the worker")
            t_kill = time.time()
            os.kill(victim, signal.SIGKILL)
        else:
            ready_before = target.ready_count()
            t_kill = time.time()
            proc.send_signal(signal.SIGKILL)
            proc.popen.wait(timeout=10)
            if ready_before is not None:
                # RabbitMQ requeues a dead connection's unacked messages itself: time it.
                with contextlib.suppress(WaitTimeout):
                    wait_for(
                        lambda: target.ready_count() > ready_before,
                        timeout=10,
                        what="the broker to requeue",
                        interval=0.02,
                    )
                    result["broker_requeue_s"] = round(time.time() - t_kill, 3)
            time.sleep(0.5)
            result["orphans_after_main_kill"] = len(children(proc.pid))
            replacement, ready_s = start_worker(
                ctx, target, f"{hostname}b", TASK_TIME_LIMIT=time_limit
            )
            result["replacement_ready_s"] = round(ready_s, 2)
        started_before = {
            token
            for token, entry in events_by_token(target.events_list()).items()
            if entry["start"] and entry["start"][0] < t_kill
        }
        deadline = t_kill + window
        while time.time() < deadline:
            done = events_by_token(target.events_list())
            if all(done.get(t, {}).get("end") for t in tokens):
                break
            time.sleep(0.2)
        by_token = events_by_token(target.events_list())
        restarts = [s for t in started_before for s in by_token[t]["start"] if s > t_kill]
        completed = [t for t in tokens if by_token.get(t, {}).get("end")]
        result.update(
            {
                "tasks": len(tokens),
                "completed": len(completed),
                "lost": len(tokens) - len(completed),
                "executions": sum(len(by_token.get(t, {}).get("start", [])) for t in tokens),
                "running_at_kill": len(started_before),
                "parked_at_end": target.parked(),
                "redelivery_delay_s": round(min(restarts) - t_kill, 2) if restarts else None,
                "last_completion_after_kill_s": round(
                    max(by_token[t]["end"][-1] for t in completed) - t_kill, 2
                )
                if completed
                else None,
                "window_s": window,
            }
        )
        return result
    finally:
        if replacement is not None:
            ctx.registry.stop(replacement)
        ctx.registry.stop(proc)


def measure(ctx: Context, stock: Target, generated: Target, cfg: dict, out: dict[str, Any]) -> None:
    """Redis: a child killed, then the main process killed, both configurations each time."""
    errors, loss_cfg = out["errors"], cfg["loss"]
    loss = out.setdefault("worker_loss", {"stock": {}, "generated": {}})
    with section("worker_loss_child")(out):
        for rep in range(cfg["reps"]):
            for target in (stock, generated) if rep % 2 == 0 else (generated, stock):
                loss[target.name].setdefault("child", []).append(
                    guarded(
                        errors,
                        f"child kill {target.name} {rep}",
                        worker_loss,
                        ctx,
                        target,
                        "child",
                        loss_cfg,
                        loss_cfg["window_child_s"],
                        f"c{rep}",
                    )
                )
    with section("worker_loss_main")(out):
        for rep in range(cfg["reps"]):
            # Both configurations in the same window, side by side (separate Redis DBs):
            # the generated one needs the visibility timeout plus kombu's restore sweep.
            results: dict[str, Any] = {}

            def one(t: Target, rep: int = rep, results: dict = results) -> None:
                results[t.name] = guarded(
                    errors,
                    f"main kill {t.name} {rep}",
                    worker_loss,
                    ctx,
                    t,
                    "main",
                    loss_cfg,
                    loss_cfg["window_main_s"],
                    f"m{rep}{t.name[0]}",
                )

            threads = [
                threading.Thread(target=one, args=(t,), daemon=True) for t in (generated, stock)
            ]
            for thread in threads:
                thread.start()
                time.sleep(0.2)
            for thread in threads:
                thread.join(loss_cfg["window_main_s"] + 120)
            for name in ("stock", "generated"):
                loss[name].setdefault("main", []).append(results.get(name))


def measure_rabbitmq(ctx: Context, generated: Target, cfg: dict, out: dict[str, Any]) -> None:
    """RabbitMQ: the generated worker's main process killed, a replacement started at once."""
    runs = []
    with section("worker_loss_rabbitmq")(out):
        for rep in range(cfg["reps"]):
            runs.append(
                guarded(
                    out["errors"],
                    f"rabbitmq main kill {rep}",
                    worker_loss,
                    ctx,
                    generated,
                    "main",
                    cfg["loss"],
                    cfg["loss"]["window_child_s"],
                    f"rmq{rep}",
                )
            )
    out["worker_loss_rabbitmq"] = {"generated": {"main": runs}}
