"""Turn the driver's raw results into the summary (JSON) and the markdown tables.

Standard library only. `python benchmarks/report.py results/latest.json` re-renders the
markdown from a saved run.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

BLOCKED_S = 1.0  # a short task waiting this much longer than necessary counts as blocked


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (with fewer than 100 samples p99 is the maximum)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    rank = max(1, math.ceil(share * len(values)))
    return values[rank - 1]


def spread(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt(min(values))}-{fmt(max(values))}"


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}f}"
    return str(value)


# The roles and processes of the memory row, in the order its figures are printed.
RSS_ROLES = (
    ("web", "child"),
    ("worker", "main"),
    ("worker", "child"),
    ("beat", "main"),
    ("flower", "main"),
)


def _rss_by_role(memory: dict) -> str:
    """Join each role's peak RSS (MiB) in RSS_ROLES order."""
    return "/".join(fmt((memory.get(role) or {}).get(part), 0) for role, part in RSS_ROLES)


def ok(runs) -> list:
    return [run for run in runs or [] if run]


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Compute every headline metric with its goal and verdict."""
    d = raw.get("driver", {})
    rmq = raw.get("driver_rabbitmq", {})
    s: dict[str, Any] = {}

    # Head-of-line blocking.
    hol = {}
    for scenario, configs in (d.get("hol") or {}).items():
        hol[scenario] = {}
        for name, runs in configs.items():
            runs = ok(runs)
            shorts = [short for run in runs for short in run["shorts"]]
            hol[scenario][name] = {
                "reps": len(runs),
                "max_extra_wait_s_per_rep": [run["max_extra_wait_s"] for run in runs],
                "max_extra_wait_s_median": median(run["max_extra_wait_s"] for run in runs),
                "extra_wait_s_median": median(x["extra_wait_s"] for x in shorts),
                "wait_s_median": median(x["wait_s"] for x in shorts),
                "blocked": sum(1 for x in shorts if x["extra_wait_s"] > BLOCKED_S),
                "shorts": len(shorts),
            }
    s["hol"] = hol

    # Throughput.
    tp = {}
    for name, runs in (d.get("throughput") or {}).items():
        runs = ok(runs)
        tp[name] = {
            "reps": len(runs),
            "tasks_per_s": [run["tasks_per_s"] for run in runs],
            "tasks_per_s_median": median(run["tasks_per_s"] for run in runs),
            "incl_startup_tasks_per_s_median": median(
                run["incl_startup_tasks_per_s"] for run in runs
            ),
            "worker_ready_s_median": median(run["worker_ready_s"] for run in runs),
            "enqueue_tasks_per_s_median": median(run["enqueue_tasks_per_s"] for run in runs),
        }
    stock_tp = (tp.get("stock") or {}).get("tasks_per_s_median")
    gen_tp = (tp.get("generated") or {}).get("tasks_per_s_median")
    pairs = list(
        zip(
            (d.get("throughput") or {}).get("stock") or [],
            (d.get("throughput") or {}).get("generated") or [],
            strict=False,
        )
    )
    tp["profile_ratio_of_medians"] = (
        round(tp["profile"]["tasks_per_s_median"] / stock_tp, 3)
        if tp.get("profile", {}).get("tasks_per_s_median") and stock_tp
        else None
    )
    tp["ratio_of_medians"] = round(gen_tp / stock_tp, 3) if stock_tp and gen_tp else None
    tp["paired_ratios"] = [
        round(g["tasks_per_s"] / st["tasks_per_s"], 3) for st, g in pairs if st and g
    ]
    s["throughput"] = tp
    s["publish"] = summarize_publish(d.get("publish") or {})
    s["scaling"] = summarize_scaling(d.get("scaling") or {})

    # The booted service: readiness, HTTP round trip, probe.
    boots = ok(d.get("boot"))
    samples = [ms for boot in boots for ms in boot["roundtrip_ms"]]
    s["roundtrip_ms"] = {
        "n": len(samples),
        "p50": percentile(samples, 0.50),
        "p90": percentile(samples, 0.90),
        "p99": percentile(samples, 0.99),
        "max": max(samples) if samples else None,
    }
    roles = sorted({role for boot in boots for role in boot["ready_s"]})
    s["ready_s"] = {
        "reps": len(boots),
        "all_roles_median": median(boot["all_ready_s"] for boot in boots),
        "all_roles_per_rep": [boot["all_ready_s"] for boot in boots],
        "per_role_median": {r: median(b["ready_s"].get(r) for b in boots) for r in roles},
        "migrate_s_median": median(boot["migrate_s"] for boot in boots),
    }
    probe: dict[str, Any] = {}
    for kind in ("python_startup", "probe", "ping_service_app", "ping_minimal_app"):
        calls = [call for boot in boots for call in boot["probe"].get(kind, [])]
        probe[kind] = {
            "n": len(calls),
            "wall_ms": [round(c["wall_s"] * 1000, 1) for c in calls],
            "wall_ms_median": median(c["wall_s"] * 1000 for c in calls),
            "wall_ms_max": max((c["wall_s"] * 1000 for c in calls), default=None),
            "cpu_ms_median": median(c["cpu_s"] * 1000 for c in calls),
            "max_rss_mib_median": median(c["max_rss_mib"] for c in calls),
            "exit_codes": sorted({c["exit"] for c in calls}),
        }
    imports = [boot["probe"]["probe_third_party_imports"] for boot in boots]
    probe["third_party_imports"] = imports[0] if imports else None
    probe["missing_heartbeat_exit"] = [b["probe"]["probe_missing_heartbeat_exit"] for b in boots]
    s["probe"] = probe

    # Worker loss and redelivery.
    loss = {}
    for name, kills in (d.get("worker_loss") or {}).items():
        loss[name] = {}
        for kill, runs in kills.items():
            runs = ok(runs)
            loss[name][kill] = {
                "reps": len(runs),
                "lost": [run["lost"] for run in runs],
                "executions": [run["executions"] for run in runs],
                "tasks": runs[0]["tasks"] if runs else None,
                "running_at_kill": [run["running_at_kill"] for run in runs],
                "parked_at_end": [run["parked_at_end"] for run in runs],
                "redelivery_delay_s": [run["redelivery_delay_s"] for run in runs],
                "redelivery_delay_s_median": median(r["redelivery_delay_s"] for r in runs),
                "window_s": runs[0]["window_s"] if runs else None,
                "replacement_ready_s_median": median(r.get("replacement_ready_s") for r in runs),
            }
    rmq_runs = ok(((rmq.get("worker_loss_rabbitmq") or {}).get("generated") or {}).get("main"))
    loss["generated_rabbitmq_main"] = {
        "reps": len(rmq_runs),
        "lost": [run["lost"] for run in rmq_runs],
        "executions": [run["executions"] for run in rmq_runs],
        "redelivery_delay_s": [run["redelivery_delay_s"] for run in rmq_runs],
        "redelivery_delay_s_median": median(run["redelivery_delay_s"] for run in rmq_runs),
        "replacement_ready_s_median": median(run.get("replacement_ready_s") for run in rmq_runs),
        "broker_requeue_s": [run.get("broker_requeue_s") for run in rmq_runs],
        "broker_requeue_s_median": median(run.get("broker_requeue_s") for run in rmq_runs),
    }
    s["worker_loss"] = loss
    s["derived"] = d.get("derived", {})
    copier = raw.get("copier_copy_s") or []
    s["copier_copy_s"] = {"runs": copier, "median": median(copier)}
    s["http"] = summarize_http((raw.get("driver_http") or {}).get("http") or {})
    s["queues_growth"] = summarize_queues(raw.get("driver_queues") or {})
    obs = (tp.get("observed") or {}).get("tasks_per_s_median")
    dark = (tp.get("dark") or {}).get("tasks_per_s_median")
    s["observability"] = {
        "throughput_on": obs,
        "throughput_off": dark,
        "throughput_ratio": round(obs / dark, 3) if obs and dark else None,
        "http_p50_on": (s["http"].get("fixed") or {}).get("generated", {}).get("p50_ms"),
        "http_p50_off": (s["http"].get("fixed") or {}).get("generated-quiet", {}).get("p50_ms"),
    }
    on, off = s["observability"]["http_p50_on"], s["observability"]["http_p50_off"]
    s["observability"]["http_p50_ratio"] = round(on / off, 3) if on and off else None
    s["goals"] = goals(s) + growth_goals(s)
    return s


def summarize_scaling(raw: dict[str, Any]) -> dict[str, Any]:
    """Median tasks/s with 1 and 2 worker processes per target, and their ratio."""
    out = {}
    for name, by_workers in raw.items():
        one = median(run["tasks_per_s"] for run in ok(by_workers.get("1")))
        two = median(run["tasks_per_s"] for run in ok(by_workers.get("2")))
        out[name] = {
            "one": one,
            "two": two,
            "ratio": round(two / one, 2) if one and two else None,
            "reps": len(ok(by_workers.get("2"))),
        }
    return out


def _scaling_cell(v: dict[str, Any] | None) -> str | None:
    if not v or not v.get("ratio"):
        return None
    return f"{fmt(v['one'])} → {fmt(v['two'])} (x{fmt(v['ratio'])})"


ROLES = ("web", "worker", "beat", "flower", "flower_full_app")


def _role_memory(snapshot: dict[str, Any] | None) -> dict[str, float | None]:
    """Peak RSS (VmHWM, MiB): main process, and the largest child (web and worker)."""
    if not snapshot:
        return {"main": None, "child": None}
    children = [c.get("VmHWM") for c in snapshot.get("children") or [] if c.get("VmHWM")]
    return {"main": snapshot["main"].get("VmHWM"), "child": max(children) if children else None}


def summarize_http(d: dict[str, Any]) -> dict[str, Any]:
    """Saturation, the latency curve, end to end and memory per role of the HTTP path."""
    out: dict[str, Any] = {"fixed_rate": d.get("fixed_rate"), "curve_rates": d.get("curve_rates")}
    sat = {}
    for name, runs in (d.get("saturation") or {}).items():
        runs = ok(runs)
        sat[name] = {
            "reps": len(runs),
            "requests_per_s": [r["requests_per_s"] for r in runs],
            "requests_per_s_median": median(r["requests_per_s"] for r in runs),
            "p50_ms_median": median(r["p50_ms"] for r in runs),
            "p99_ms_median": median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
        }
    out["saturation"] = sat
    st = (sat.get("stock") or {}).get("requests_per_s_median")
    gen = (sat.get("generated") or {}).get("requests_per_s_median")
    out["saturation_ratio"] = round(gen / st, 3) if st and gen else None
    curve: dict[str, list[dict[str, Any]]] = {}
    for name, runs in (d.get("curve") or {}).items():
        points: dict[float, list[dict[str, Any]]] = {}
        for run in ok(runs):
            for point in run:
                points.setdefault(point["offered_per_s"], []).append(point)
        curve[name] = [
            {
                "offered_per_s": rate,
                "achieved_per_s": median(p["achieved_per_s"] for p in ps),
                "p50_ms": median(p["p50_ms"] for p in ps),
                "p90_ms": median(p["p90_ms"] for p in ps),
                "p99_ms": median(p["p99_ms"] for p in ps),
                "errors": sum(p["errors"] for p in ps),
                "reps": len(ps),
            }
            for rate, ps in sorted(points.items())
        ]
    out["curve"] = curve
    fixed = d.get("fixed_rate")
    out["fixed"] = {
        name: next((p for p in points if p["offered_per_s"] == fixed), {})
        for name, points in curve.items()
    }
    e2e = {}
    for name, runs in (d.get("end_to_end") or {}).items():
        runs = ok(runs)
        memory = {}
        for when in ("memory_idle", "memory_after"):
            memory[when] = {}
            for role in ROLES:
                per_run = [_role_memory((r.get(when) or {}).get(role)) for r in runs]
                memory[when][role] = {
                    part: median(m[part] for m in per_run) for part in ("main", "child")
                }
        e2e[name] = {
            "reps": len(runs),
            "jobs_per_s": [r["jobs_per_s"] for r in runs],
            "jobs_per_s_median": median(r["jobs_per_s"] for r in runs),
            "accepted": [r["accepted"] for r in runs],
            "lost": [r["lost"] for r in runs],
            "duplicated": [r["duplicated"] for r in runs],
            "http_errors": [r["http_errors"] for r in runs],
            "memory": memory,
        }
    out["end_to_end"] = e2e
    st = (e2e.get("stock") or {}).get("jobs_per_s_median")
    gen = (e2e.get("generated") or {}).get("jobs_per_s_median")
    out["end_to_end_ratio"] = round(gen / st, 3) if st and gen else None
    return out


def summarize_publish(d: dict[str, Any]) -> dict[str, Any]:
    """The interleaved publish blocks: each producer's median and the paired ratio."""
    rates = d.get("tasks_per_s") or {}
    return {
        "block_tasks": d.get("block_tasks"),
        "rounds": d.get("rounds"),
        "stock_per_s": median(rates.get("stock") or []),
        "generated_per_s": median(rates.get("generated") or []),
        "paired_ratios": d.get("paired_ratios") or [],
        "ratio": d.get("ratio"),
    }


GROWTH_FIELDS = (
    ("worker_ready_s", "stock_worker_ready_s", "worker ready after start", "s"),
    ("publish_per_s", "stock_publish_per_s", "publish rate", "tasks/s"),
    ("health_celery_ms", None, "GET /health/celery", "ms"),
    ("doctor_ms", None, "`python -m <pkg>.doctor`", "ms"),
)


def summarize_queues(d: dict[str, Any]) -> dict[str, Any]:
    """Per queue count: the median of each figure over the repetitions."""
    out: dict[str, Any] = {}
    for count, runs in (d.get("runs") or {}).items():
        runs = ok(runs)
        row: dict[str, Any] = {"reps": len(runs)}
        for field, stock_field, _label, _unit in GROWTH_FIELDS:
            row[field] = median(r.get(field) for r in runs)
            if stock_field:
                row[stock_field] = median(r.get(stock_field) for r in runs)
        out[count] = row
    return out


def growth_goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of issue 14 (HTTP path, memory, growth) and issue 11's cost row."""
    rows = []
    tp = s["throughput"]
    st_tp, gen_tp = tp.get("stock") or {}, tp.get("generated") or {}
    pub = s["publish"]
    st_pub, gen_pub, pub_ratio = pub["stock_per_s"], pub["generated_per_s"], pub["ratio"]
    rows.append(
        {
            "metric": "publish rate, one producer, Redis (tasks/s; result ignored, as the "
            "service's tasks publish; interleaved blocks, median of the paired ratios)",
            "goal": "ratio ≥ 0.95",
            "stock": st_pub,
            "generated": gen_pub,
            "extra": f"ratio {fmt(pub_ratio)}",
            "unit": "tasks/s",
            "verdict": verdict(pub_ratio >= 0.95 if pub_ratio else None),
        }
    )
    st_ready, gen_ready = st_tp.get("worker_ready_s_median"), gen_tp.get("worker_ready_s_median")
    ready_ratio = round(gen_ready / st_ready, 3) if st_ready and gen_ready else None
    rows.append(
        {
            "metric": "worker ready after start, -c 2, Redis (s; median of the throughput runs)",
            "goal": "ratio ≤ 1.1",
            "stock": st_ready,
            "generated": gen_ready,
            "extra": f"ratio {fmt(ready_ratio)}",
            "unit": "s",
            "verdict": verdict(ready_ratio <= 1.1 if ready_ratio else None),
        }
    )
    h = s["http"]
    sat = h.get("saturation") or {}
    ratio = h.get("saturation_ratio")
    rows.append(
        {
            "metric": "HTTP POST /jobs saturation, PostgreSQL, 16 clients (requests/s; "
            "stock = Flask docs' Celery pattern)",
            "goal": "ratio ≥ 1.0",
            "stock": (sat.get("stock") or {}).get("requests_per_s_median"),
            "generated": (sat.get("generated") or {}).get("requests_per_s_median"),
            "extra": f"ratio {fmt(ratio)}",
            "unit": "requests/s",
            "verdict": verdict(ratio >= 1.0 if ratio else None),
        }
    )
    fixed = h.get("fixed") or {}
    st, gen = fixed.get("stock") or {}, fixed.get("generated") or {}
    rows.append(
        {
            "metric": f"HTTP POST /jobs p50 / p99 at a fixed {fmt(h.get('fixed_rate'))} requests/s "
            "(open loop, from the scheduled time)",
            "goal": "p99 ≤ 50 ms",
            "stock": f"{fmt(st.get('p50_ms'), 1)} / {fmt(st.get('p99_ms'), 1)} ms" if st else None,
            "generated": f"{fmt(gen.get('p50_ms'), 1)} / {fmt(gen.get('p99_ms'), 1)} ms"
            if gen
            else None,
            "unit": "",
            "verdict": verdict(gen["p99_ms"] <= 50 if gen.get("p99_ms") is not None else None),
        }
    )
    e2e = h.get("end_to_end") or {}
    est, egen = e2e.get("stock") or {}, e2e.get("generated") or {}
    rows.append(end_to_end_row(e2e, "", "PostgreSQL"))
    rows.append(end_to_end_row(e2e, "-sqlite", "SQLite"))
    mem_st = ((est.get("memory") or {}).get("memory_after")) or {}
    mem_gen = ((egen.get("memory") or {}).get("memory_after")) or {}
    full = (mem_gen.get("flower_full_app") or {}).get("main")
    broker_only = (mem_gen.get("flower") or {}).get("main")
    rows.append(
        {
            "metric": "peak RSS per role after the end-to-end jobs (MiB; web worker / worker "
            "main / worker child / beat / Flower)",
            "goal": "figure (no goal)",
            "stock": _rss_by_role(mem_st) if mem_st else None,
            "generated": _rss_by_role(mem_gen) if mem_gen else None,
            "unit": "",
            "verdict": "figure" if mem_gen else "not measured",
        }
    )
    rows.append(
        {
            "metric": "Flower peak RSS: broker-only app vs the full Flask worker app (MiB)",
            "goal": "figure (no goal)",
            "stock": f"{fmt(full, 0)} (full app)" if full else None,
            "generated": f"{fmt(broker_only, 0)} (broker-only; "
            f"ratio {fmt(broker_only / full if broker_only and full else None)})"
            if broker_only
            else None,
            "unit": "",
            "verdict": "figure" if broker_only else "not measured",
        }
    )
    scaling = s.get("scaling") or {}
    rows.append(
        {
            "metric": "throughput scaling: 1 → 2 worker processes (-c 2 each) on one queue, Redis, "
            "2 cores (tasks/s, from when every worker is ready)",
            "goal": "figure (no goal)",
            "stock": _scaling_cell(scaling.get("stock")),
            "generated": _scaling_cell(scaling.get("generated")),
            "unit": "",
            "verdict": "figure" if _scaling_cell(scaling.get("generated")) else "not measured",
        }
    )
    growth = s["queues_growth"]
    counts = sorted(growth, key=int)
    if counts:
        first, last = growth[counts[0]], growth[counts[-1]]
        for field, _stock_field, label, unit in GROWTH_FIELDS:
            a, b = first.get(field), last.get(field)
            # A rate grows the wrong way down: compare its inverse.
            ratio = (a / b if field == "publish_per_s" else b / a) if a and b else None
            rows.append(
                {
                    "metric": f"queue growth: {label}, {counts[0]} → {counts[-1]} queues "
                    "(cost ratio)",
                    "goal": "≤ 1.10 (flat within 10 %)",
                    "stock": None,
                    "generated": f"{fmt(a)} → {fmt(b)} {unit} (ratio {fmt(ratio)})",
                    "unit": "",
                    "verdict": verdict(ratio <= 1.10 if ratio else None),
                }
            )
    o = s["observability"]
    rows.append(
        {
            "metric": "observability cost: no-op throughput (stock column: text logs, "
            "METRICS_ENABLED=false; generated column: JSON logs + metrics, as deployed)",
            "goal": "ratio ≥ 0.95",
            "stock": o.get("throughput_off"),
            "generated": o.get("throughput_on"),
            "extra": f"ratio {fmt(o.get('throughput_ratio'))}",
            "unit": "tasks/s",
            "verdict": verdict(
                o["throughput_ratio"] >= 0.95 if o.get("throughput_ratio") else None
            ),
        }
    )
    rows.append(
        {
            "metric": "observability cost: HTTP POST /jobs p50 at the fixed load (stock column: "
            "text logs, METRICS_ENABLED=false; generated column: JSON logs + metrics)",
            "goal": "within 10 %",
            "stock": o.get("http_p50_off"),
            "generated": o.get("http_p50_on"),
            "extra": f"ratio {fmt(o.get('http_p50_ratio'))}",
            "unit": "ms",
            "verdict": verdict(o["http_p50_ratio"] <= 1.10 if o.get("http_p50_ratio") else None),
        }
    )
    return rows


def end_to_end_row(e2e: dict[str, Any], suffix: str, database: str) -> dict[str, Any]:
    """The end-to-end goal row of one database: jobs/s, and nothing lost or duplicated."""
    est, egen = e2e.get(f"stock{suffix}") or {}, e2e.get(f"generated{suffix}") or {}
    st, gen = est.get("jobs_per_s_median"), egen.get("jobs_per_s_median")
    lost = (egen.get("lost") or []) + (egen.get("duplicated") or [])
    return {
        "metric": f"end to end, {database}: jobs/s until every accepted job is settled; lost / "
        "duplicated side effects (from the database, per rep)",
        "goal": "0 lost, 0 duplicated",
        "stock": f"{fmt(st)} jobs/s; lost {cell(est.get('lost'))}, "
        f"dup {cell(est.get('duplicated'))}, HTTP errors {cell(est.get('http_errors'))}"
        if est
        else None,
        "generated": f"{fmt(gen)} jobs/s (ratio {fmt(gen / st if st and gen else None)}); "
        f"lost {cell(egen.get('lost'))}, dup {cell(egen.get('duplicated'))}"
        if egen
        else None,
        "unit": "",
        "verdict": verdict(all(n == 0 for n in lost) if egen.get("reps") else None),
    }


def verdict(condition: bool | None) -> str:
    if condition is None:
        return "not measured"
    return "met" if condition else "MISSED"


def goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal of the issue: stock value, generated value, verdict."""
    rows = []
    hol3 = s["hol"].get("hol3", {})
    hol_gen = [
        v["max_extra_wait_s_median"] for v in (sc.get("generated", {}) for sc in s["hol"].values())
    ]
    hol_gen = [v for v in hol_gen if v is not None]
    rows.append(
        {
            "metric": "head-of-line: max extra wait of a short task (hol3; hol1 in details)",
            "goal": "≤ 0.15 s",
            "stock": (hol3.get("stock") or {}).get("max_extra_wait_s_median"),
            "generated": (hol3.get("generated") or {}).get("max_extra_wait_s_median"),
            "unit": "s",
            "verdict": verdict(max(hol_gen) <= 0.15 if hol_gen else None),
        }
    )
    tp = s["throughput"]
    rows.append(
        {
            "metric": "no-op throughput, prefork -c 2, Redis (tasks/s; ratio of medians)",
            "goal": "ratio ≥ 0.9",
            "stock": (tp.get("stock") or {}).get("tasks_per_s_median"),
            "generated": (tp.get("generated") or {}).get("tasks_per_s_median"),
            "extra": f"ratio {fmt(tp.get('ratio_of_medians'))}",
            "unit": "tasks/s",
            "verdict": verdict(
                tp["ratio_of_medians"] >= 0.9 if tp.get("ratio_of_medians") else None
            ),
        }
    )
    rt = s["roundtrip_ms"]
    rows.append(
        {
            "metric": f"HTTP enqueue → SUCCESS round trip, p50 / p99 (n={rt['n']})",
            "goal": "p50 ≤ 50 ms",
            "stock": None,
            "generated": f"{fmt(rt['p50'], 1)} / {fmt(rt['p99'], 1)}",
            "unit": "ms",
            "verdict": verdict(rt["p50"] <= 50 if rt["p50"] is not None else None),
        }
    )
    probe = s["probe"]
    pkg_only = probe.get("third_party_imports")
    probe_ms = probe["probe"]["wall_ms_median"]
    rows.append(
        {
            "metric": "worker liveness probe: wall / peak RSS per call (stock column: "
            "`celery inspect ping -d` with the service app)",
            "goal": "≤ 50 ms, no app import",
            "stock": f"{fmt(probe['ping_service_app']['wall_ms_median'], 0)} ms / "
            f"{fmt(probe['ping_service_app']['max_rss_mib_median'], 0)} MiB",
            "generated": f"{fmt(probe_ms, 1)} ms / "
            f"{fmt(probe['probe']['max_rss_mib_median'], 0)} MiB"
            f"; imports beyond stdlib: {', '.join(pkg_only or []) or 'none'}",
            "unit": "",
            "verdict": verdict(
                (probe_ms <= 50 and pkg_only is not None and len(pkg_only) <= 1)
                if probe_ms is not None
                else None
            ),
        }
    )
    loss = s["worker_loss"]
    for kill in ("child", "main"):
        st = (loss.get("stock") or {}).get(kill) or {}
        gen = (loss.get("generated") or {}).get(kill) or {}
        gen_lost = gen.get("lost") or []
        rows.append(
            {
                "metric": f"tasks lost after worker SIGKILL ({kill}), Redis, of "
                f"{gen.get('tasks') or st.get('tasks')} (per rep)",
                "goal": "0 vs stock's count",
                "stock": st.get("lost"),
                "generated": gen_lost,
                "unit": "",
                "verdict": verdict(all(n == 0 for n in gen_lost) if gen_lost else None),
            }
        )
    gen_main = (loss.get("generated") or {}).get("main") or {}
    vis = s["derived"].get("loss_visibility_timeout_s")
    delay = gen_main.get("redelivery_delay_s_median")
    window = gen_main.get("window_s")
    rows.append(
        {
            "metric": f"redelivery delay after main-process SIGKILL, Redis "
            f"(TASK_TIME_LIMIT={s['derived'].get('loss_time_limit_s')} → "
            f"visibility {vis} s)",
            "goal": f"= visibility timeout ({vis} s)",
            "stock": "never (running tasks were acked)",
            "generated": fmt(delay, 1) if delay is not None else f"> {window} s (window)",
            "unit": "s",
            "verdict": verdict(
                delay <= vis + 5
                if delay is not None and vis
                else (False if gen_main.get("reps") else None)
            ),
        }
    )
    rmq = loss.get("generated_rabbitmq_main") or {}
    rmq_requeue = rmq.get("broker_requeue_s_median")
    rmq_delay = rmq.get("redelivery_delay_s_median")
    rows.append(
        {
            "metric": "redelivery delay after main-process SIGKILL, RabbitMQ: back in the queue / "
            "re-executed by a replacement worker started at once",
            "goal": "≤ 5 s",
            "stock": None,
            "generated": f"{fmt(rmq_requeue, 2)} s / {fmt(rmq_delay, 1)} s "
            f"(worker start-up {fmt(rmq.get('replacement_ready_s_median'), 1)} s; "
            f"lost {cell(rmq.get('lost'))})",
            "unit": "s",
            "verdict": verdict(
                rmq_requeue <= 5
                if rmq_requeue is not None
                else (False if rmq.get("reps") else None)
            ),
        }
    )
    cp = s["copier_copy_s"]["median"]
    rows.append(
        {
            "metric": "`copier copy --defaults` wall time",
            "goal": "≤ 3 s",
            "stock": None,
            "generated": cp,
            "unit": "s",
            "verdict": verdict(cp <= 3 if cp is not None else None),
        }
    )
    ready = s["ready_s"]["all_roles_median"]
    rows.append(
        {
            "metric": "all roles ready after start (web, worker, beat, flower)",
            "goal": "≤ 10 s",
            "stock": None,
            "generated": ready,
            "unit": "s",
            "verdict": verdict(ready <= 10 if ready is not None else None),
        }
    )
    return rows


def cell(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return fmt(value)


def markdown(raw: dict[str, Any], s: dict[str, Any]) -> str:
    m = raw.get("machine", {})
    lines = [
        f"Run: {raw.get('finished_at', '?')} ({raw.get('mode', '?')} mode, "
        f"{raw.get('duration_s', '?')} s).",
        "",
        "| metric | goal | stock | generated | result |",
        "|---|---|---|---|---|",
    ]
    for row in s["goals"]:
        unit = (
            f" {row['unit']}"
            if row.get("unit")
            and not isinstance(row["generated"], str)
            and row["generated"] is not None
            and not isinstance(row["generated"], list)
            else ""
        )
        stock_unit = (
            f" {row['unit']}" if row.get("unit") and isinstance(row["stock"], int | float) else ""
        )
        generated = f"{cell(row['generated'])}{unit}"
        if row.get("extra"):
            generated += f" ({row['extra']})"
        lines.append(
            f"| {row['metric']} | {row['goal']} | {cell(row['stock'])}{stock_unit} | "
            f"{generated} | {row['verdict']} |"
        )
    lines += ["", "### Machine", "", "| item | value |", "|---|---|"]
    for key, value in m.items():
        lines.append(f"| {key} | {cell(value) if not isinstance(value, str) else value} |")

    lines += [
        "",
        "### Head-of-line blocking (short tasks; seconds)",
        "",
        "| scenario | config | blocked (extra > 1 s) | wait median | extra wait median | "
        "max extra wait per rep: median [range] | reps |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario, configs in s["hol"].items():
        for name, v in configs.items():
            lines.append(
                f"| {scenario} | {name} | {v['blocked']}/{v['shorts']} | {fmt(v['wait_s_median'])} "
                f"| {fmt(v['extra_wait_s_median'])} | {fmt(v['max_extra_wait_s_median'])} "
                f"[{spread(v['max_extra_wait_s_per_rep'])}] | {v['reps']} |"
            )
    tp = s["throughput"]
    lines += [
        "",
        "### Throughput (no-op tasks queued before the worker starts; prefork -c 2; Redis)",
        "",
        "| config | tasks/s median [range] | incl. start-up tasks/s | worker ready s | "
        "publish tasks/s | reps |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("stock", "generated", "profile", "observed", "dark"):
        v = tp.get(name)
        if not v:
            continue
        lines.append(
            f"| {name} | {fmt(v['tasks_per_s_median'])} [{spread(v['tasks_per_s'])}] | "
            f"{fmt(v['incl_startup_tasks_per_s_median'])} | {fmt(v['worker_ready_s_median'])} | "
            f"{fmt(v['enqueue_tasks_per_s_median'])} | {v['reps']} |"
        )
    lines.append("")
    pub = s["publish"]
    if pub.get("ratio") is not None:
        lines.append(
            f"Publish rate in {pub['rounds']} interleaved rounds of {pub['block_tasks']} tasks "
            f"per producer (the goal row): stock {fmt(pub['stock_per_s'])}, generated "
            f"{fmt(pub['generated_per_s'])} tasks/s; paired ratios per round "
            f"{spread(pub['paired_ratios'])}, median {fmt(pub['ratio'])}. The table's "
            "publish column is each repetition's enqueue of its backlog, minutes apart."
        )
        lines.append("")
    profile_tp = (tp.get("profile") or {}).get("tasks_per_s_median")
    stock_tp = (tp.get("stock") or {}).get("tasks_per_s_median")
    if profile_tp and stock_tp:
        lines.append(
            "`profile` (diagnostic) = a plain Celery app with the service's settings profile "
            f"but none of its app code: profile/stock {profile_tp / stock_tp:.2f}."
        )
    lines.append(
        "`observed` = GENERATED with JSON logs and a metrics listener (as deployed); "
        "`dark` = GENERATED with text logs and METRICS_ENABLED=false (observability off); "
        "`generated` runs text logs and METRICS_PORT=0 (counting, no listener)."
    )
    lines.append(
        f"Ratio of medians generated/stock: {fmt(tp.get('ratio_of_medians'))}; "
        f"paired per repetition: {cell(tp.get('paired_ratios'))}."
    )
    lines += [
        "",
        "### Worker loss (SIGKILL; K tasks x 2 s; a replacement worker starts at once "
        "after a main kill)",
        "",
        "| broker | kill | config | lost per rep | executions per rep | running at kill | "
        "left in broker at end | redelivery delay s | window s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("stock", "generated"):
        for kill, v in (s["worker_loss"].get(name) or {}).items():
            parked = [
                (f"{p['ready']}+{p['unacked']} unacked" if p else "-") for p in v["parked_at_end"]
            ]
            lines.append(
                f"| redis | {kill} | {name} | {cell(v['lost'])} | {cell(v['executions'])} | "
                f"{cell(v['running_at_kill'])} | {', '.join(parked)} | "
                f"{cell(v['redelivery_delay_s'])} | {fmt(v['window_s'])} |"
            )
    r = s["worker_loss"].get("generated_rabbitmq_main") or {}
    if r.get("reps"):
        lines.append(
            f"| rabbitmq | main | generated | {cell(r['lost'])} | {cell(r['executions'])} | - | - "
            f"| {cell(r['redelivery_delay_s'])} | - |"
        )
    ready = s["ready_s"]
    rt = s["roundtrip_ms"]
    probe = s["probe"]
    lines += [
        "",
        "### The booted service",
        "",
        f"Ready after start, median of {ready['reps']}: "
        + ", ".join(f"{role} {fmt(v)} s" for role, v in ready["per_role_median"].items())
        + f"; all roles {fmt(ready['all_roles_median'])} s (per rep "
        f"{cell(ready['all_roles_per_rep'])}); `alembic upgrade head` before it "
        f"{fmt(ready['migrate_s_median'])} s.",
        "",
        f"HTTP round trip (POST /health/celery/roundtrip, poll GET every 5 ms until SUCCESS), "
        f"n={rt['n']}: p50 {fmt(rt['p50'], 1)} ms, p90 {fmt(rt['p90'], 1)} ms, "
        f"p99 {fmt(rt['p99'], 1)} ms, max {fmt(rt['max'], 1)} ms.",
        "",
        "| liveness check | calls | wall ms median (max) | CPU ms median | peak RSS MiB | "
        "exit codes |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "python_startup": "`python -c pass` (interpreter start-up floor)",
        "probe": "`python -m <pkg>.probes worker`",
        "ping_service_app": "`celery --app <pkg>.worker:worker_app inspect ping -d <node>`",
        "ping_minimal_app": "`celery --app bench_stock inspect ping -d <node>` (minimal app)",
    }
    for kind, label in labels.items():
        v = probe[kind]
        lines.append(
            f"| {label} | {v['n']} | {fmt(v['wall_ms_median'], 1)} ({fmt(v['wall_ms_max'], 1)}) "
            f"| {fmt(v['cpu_ms_median'], 1)} | {fmt(v['max_rss_mib_median'], 1)} | "
            f"{cell(v['exit_codes'])} |"
        )
    lines.append("")
    lines.append(
        f"Probe imports beyond the standard library: "
        f"{', '.join(probe.get('third_party_imports') or []) or 'none'}; exit code with a "
        f"missing heartbeat file: {cell(probe.get('missing_heartbeat_exit'))}."
    )
    lines += http_markdown(s)
    load = {
        **(raw.get("driver", {}).get("load") or {}),
        **(raw.get("driver_rabbitmq", {}).get("load") or {}),
        **(raw.get("driver_http", {}).get("load") or {}),
        **(raw.get("driver_queues", {}).get("load") or {}),
    }
    if load:
        lines += [
            "",
            "### Load during each section (whole machine, from /proc)",
            "",
            "| section | seconds | CPU busy % | CPU steal % | loadavg before → after (1 min) |",
            "|---|---|---|---|---|",
        ]
        for name, v in load.items():
            lines.append(
                f"| {name} | {fmt(v['seconds'], 0)} | {fmt(v['cpu_busy_percent'], 0)} | "
                f"{fmt(v['steal_percent'], 1)} | {v['loadavg_before'][0]} → "
                f"{v['loadavg_after'][0]} |"
            )
    errors = raw.get("errors") or []
    if errors:
        lines += ["", "### Failed measurements", ""]
        lines += [f"- {e['scenario']}: {e['error']}" for e in errors]
    return "\n".join(lines) + "\n"


def http_markdown(s: dict[str, Any]) -> list[str]:
    """Tables of the HTTP path, memory per role and queue growth."""
    h = s.get("http") or {}
    lines: list[str] = []
    if h.get("saturation"):
        lines += [
            "",
            "### HTTP path: POST /jobs on PostgreSQL (gunicorn 2 gthread workers x 4 threads)",
            "",
            "Stock = the Flask docs' Celery pattern (bench_flask_stock.py): one commit, "
            "`.delay()`.",
            "",
            "| config | saturation requests/s median [range] | p50 / p99 ms at saturation | "
            "errors | reps |",
            "|---|---|---|---|---|",
        ]
        for name, v in h["saturation"].items():
            lines.append(
                f"| {name} | {fmt(v['requests_per_s_median'])} [{spread(v['requests_per_s'])}] | "
                f"{fmt(v['p50_ms_median'], 1)} / {fmt(v['p99_ms_median'], 1)} | {v['errors']} | "
                f"{v['reps']} |"
            )
        lines.append("")
        lines.append(f"Saturation ratio generated/stock: {fmt(h.get('saturation_ratio'))}.")
    if h.get("curve"):
        lines += [
            "",
            "Latency at fixed offered loads (open loop; from each request's scheduled time; "
            "medians over repetitions):",
            "",
            "| config | offered /s | achieved /s | p50 ms | p90 ms | p99 ms | errors | reps |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, points in h["curve"].items():
            for p in points:
                lines.append(
                    f"| {name} | {fmt(p['offered_per_s'])} | {fmt(p['achieved_per_s'])} | "
                    f"{fmt(p['p50_ms'], 1)} | {fmt(p['p90_ms'], 1)} | {fmt(p['p99_ms'], 1)} | "
                    f"{p['errors']} | {p['reps']} |"
                )
        lines.append("")
        lines.append(
            "`generated-quiet` = text logs, METRICS_ENABLED=false (the observability cost row)."
        )
    e2e = h.get("end_to_end") or {}
    if e2e:
        lines += [
            "",
            "End to end (every role running; N jobs posted by 16 clients; until all are settled):",
            "",
            "| config | jobs/s median [range] | accepted | lost | duplicated | HTTP errors "
            "| reps |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in e2e.items():
            lines.append(
                f"| {name} | {fmt(v['jobs_per_s_median'])} [{spread(v['jobs_per_s'])}] | "
                f"{cell(v['accepted'])} | {cell(v['lost'])} | {cell(v['duplicated'])} | "
                f"{cell(v['http_errors'])} | {v['reps']} |"
            )
        lines += [
            "",
            "### Memory per role (peak RSS, VmHWM, MiB; median over repetitions)",
            "",
            "| role | stock idle | stock after jobs | generated idle | generated after jobs | "
            "after: generated/stock |",
            "|---|---|---|---|---|---|",
        ]
        parts = (
            ("web worker (each gunicorn worker)", "web", "child"),
            ("web master", "web", "main"),
            ("worker main", "worker", "main"),
            ("worker child (each)", "worker", "child"),
            ("beat", "beat", "main"),
            ("Flower (stock: full app; generated: broker-only)", "flower", "main"),
            ("Flower on the full Flask worker app", "flower_full_app", "main"),
        )
        st = (e2e.get("stock") or {}).get("memory") or {}
        gen = (e2e.get("generated") or {}).get("memory") or {}

        def at(memory, when, role, part):
            return ((memory.get(when) or {}).get(role) or {}).get(part)

        for label, role, part in parts:
            sa, ga = at(st, "memory_after", role, part), at(gen, "memory_after", role, part)
            lines.append(
                f"| {label} | {fmt(at(st, 'memory_idle', role, part), 1)} | {fmt(sa, 1)} | "
                f"{fmt(at(gen, 'memory_idle', role, part), 1)} | {fmt(ga, 1)} | "
                f"{fmt(ga / sa if ga and sa else None)} |"
            )
    growth = s.get("queues_growth") or {}
    if growth:
        lines += [
            "",
            "### How cost grows with the number of queues (medians)",
            "",
            "| queues | worker ready s (stock-N) | publish tasks/s (stock-N) | "
            "GET /health/celery ms | doctor ms | reps |",
            "|---|---|---|---|---|---|",
        ]
        for count in sorted(growth, key=int):
            v = growth[count]
            lines.append(
                f"| {count} | {fmt(v['worker_ready_s'])} ({fmt(v['stock_worker_ready_s'])}) | "
                f"{fmt(v['publish_per_s'])} ({fmt(v['stock_publish_per_s'])}) | "
                f"{fmt(v['health_celery_ms'], 0)} | {fmt(v['doctor_ms'], 0)} | {v['reps']} |"
            )
        lines.append("")
        lines.append(
            "Stock-N = a plain Celery app declaring the same N queues; /health/celery waits "
            "for the workers' inspect replies (1 s) by design; copier.yml allows at most 8 queues."
        )
    return lines


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else Path(__file__).parent / "results" / "latest.json")
    data = json.loads(path.read_text())
    raw = data.get("raw", data)
    summary = summarize(raw)
    print(markdown(raw, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
