"""Draw the head-of-line plot, and the HTTP latency curve next to it (http.png).

    uvx --with matplotlib python benchmarks/plot.py benchmarks/results/latest.json \
        benchmarks/results/hol.png

hol.png: per short task, its extra wait under stock vs generated. http.png (when the run has
the HTTP path): POST /jobs p50 and p99 against the offered load, stock vs generated, with the
saturation of each as a vertical line.

matplotlib is not a project dependency: run.py calls this through uvx.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"stock": "#d62728", "generated": "#2ca02c", "generated-quiet": "#9467bd"}


def main(argv: list[str]) -> int:
    source = Path(argv[1])
    target = Path(argv[2])
    data = json.loads(source.read_text())
    raw = data.get("raw", data)
    hol = raw["driver"]["hol"]
    scenarios = list(hol)
    fig, axes = plt.subplots(
        1, len(scenarios), figsize=(5.2 * len(scenarios), 3.6), squeeze=False, sharey=True
    )
    for axis, scenario in zip(axes[0], scenarios, strict=True):
        for offset, (name, runs) in enumerate(hol[scenario].items()):
            for rep, run in enumerate(runs):
                if not run:
                    continue
                xs = [i + (offset - 0.5) * 0.3 for i in range(len(run["shorts"]))]
                ys = [short["extra_wait_s"] for short in run["shorts"]]
                axis.scatter(
                    xs,
                    ys,
                    s=22,
                    color=COLORS.get(name, "grey"),
                    alpha=0.75,
                    label=name if rep == 0 else None,
                )
        axis.axhline(0.15, color="black", linestyle="--", linewidth=0.8, label="goal 0.15 s")
        axis.set_title(f"{scenario}: short tasks behind long ones")
        axis.set_xlabel("short task (in enqueue order)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("extra wait (s), beyond the first free child")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(
        f"Head-of-line blocking, {raw.get('mode', '')} run {raw.get('finished_at', '')}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(target, dpi=80)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")
    http = (raw.get("driver_http") or {}).get("http") or {}
    if http.get("curve"):
        http_curve(raw, http, target.with_name("http.png"))
    return 0


def http_curve(raw: dict, http: dict, target: Path) -> None:
    """p50 (solid) and p99 (dashed) of POST /jobs per offered load; saturation as a line."""
    fig, axis = plt.subplots(figsize=(6.4, 3.8))
    for name, runs in http["curve"].items():
        points: dict[float, list[dict]] = {}
        for run in runs:
            for point in run or []:
                points.setdefault(point["offered_per_s"], []).append(point)
        rates = sorted(points)
        if not rates:
            continue
        color = COLORS.get(name, "#1f77b4")

        def med(values):
            values = sorted(values)
            return values[len(values) // 2]

        for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
            ys = [med(p[key] for p in points[rate]) for rate in rates]
            axis.plot(rates, ys, style, marker="o", color=color, label=f"{name} {key[:3]}")
    for name, runs in (http.get("saturation") or {}).items():
        values = sorted(run["requests_per_s"] for run in runs if run)
        if values:
            axis.axvline(
                values[len(values) // 2],
                color=COLORS.get(name, "grey"),
                linestyle=":",
                linewidth=1,
                label=f"{name} saturation",
            )
    axis.axhline(50, color="black", linestyle="--", linewidth=0.6, label="goal p99 50 ms")
    axis.set_yscale("log")
    axis.set_xlabel("offered load (POST /jobs per second, open loop)")
    axis.set_ylabel("latency (ms, from the scheduled time)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    fig.suptitle(
        f"POST /jobs on PostgreSQL, {raw.get('mode', '')} run {raw.get('finished_at', '')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=80)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
