"""Draw the head-of-line plot: per short task, its extra wait under stock vs generated.

    uvx --with matplotlib python benchmarks/plot.py benchmarks/results/latest.json \
        benchmarks/results/hol.png

matplotlib is not a project dependency: run.py calls this through uvx.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"stock": "#d62728", "generated": "#2ca02c"}


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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
