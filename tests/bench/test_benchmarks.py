"""Smoke test of the benchmark harness: the quick mode runs and reports every metric.

No timing assertions: this machine's numbers belong in docs/benchmarks.md, not in a test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "benchmarks" / "run.py"
METRICS = (
    "head-of-line",
    "no-op throughput",
    "HTTP enqueue",
    "worker liveness probe",
    "tasks lost after worker SIGKILL (child)",
    "tasks lost after worker SIGKILL (main)",
    "redelivery delay after main-process SIGKILL, Redis",
    "redelivery delay after main-process SIGKILL, RabbitMQ",
    "`copier copy --defaults` wall time",
    "all roles ready after start",
)


@pytest.mark.timeout(900)
def test_quick_benchmark_reports_every_metric(tmp_path):
    missing = [tool for tool in ("redis-server", "redis-cli", "uv") if shutil.which(tool) is None]
    assert not missing, f"the benchmark needs {missing} on PATH (.ci/run installs them)"
    completed = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--no-plot", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    table = (tmp_path / "latest.md").read_text()
    summary, raw = result["summary"], result["raw"]
    assert raw["mode"] == "quick"
    assert raw["errors"] == [], raw["errors"]
    rows = {row["metric"]: row for row in summary["goals"]}
    rabbitmq = shutil.which("rabbitmqctl") is not None
    for metric in METRICS:
        matching = [row for name, row in rows.items() if name.startswith(metric)]
        assert matching, f"no row for {metric!r} in {sorted(rows)}"
        for row in matching:
            if "RabbitMQ" in metric and not rabbitmq:
                continue
            assert row["generated"] is not None, row
            assert row["verdict"] in ("met", "MISSED"), row
            assert row["metric"] in table
    assert "| metric | goal | stock | generated | result |" in table
    for key in ("nproc", "python", "celery", "kombu", "redis-server"):
        assert key in summary["goals"][0] or key in raw["machine"], key
