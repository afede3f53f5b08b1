"""Smoke test of the benchmark harness: the quick mode runs and reports every metric.

No timing assertions: this machine's numbers belong in docs/benchmarks.md, not in a test.
"""

from __future__ import annotations

import json
import shutil
import socket
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
    # Issue 14: publish and start-up vs stock, the HTTP path vs the Flask docs, memory, growth.
    "publish rate, one producer",
    "worker ready after start, -c 2",
    "HTTP POST /jobs saturation",
    "HTTP POST /jobs p50 / p99 at a fixed",
    "end to end, PostgreSQL: jobs/s",
    "end to end, SQLite: jobs/s",
    "throughput scaling: 1 → 2 worker processes",
    "peak RSS per role",
    "Flower peak RSS",
    "queue growth: worker ready",
    "queue growth: publish rate",
    "queue growth: GET /health/celery",
    "queue growth: `python -m <pkg>.doctor`",
    # Issue 11 item 6: what JSON logs and the metrics listener cost.
    "observability cost: no-op throughput",
    "observability cost: HTTP POST /jobs p50",
)
# Rows that need the machine's PostgreSQL on 127.0.0.1:5432 (the HTTP path's database).
NEEDS_POSTGRES = (
    "HTTP POST /jobs",
    "end to end",
    "peak RSS",
    "Flower peak",
    "observability cost: HTTP",
)


def postgres_listens() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return False
    return True


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
    postgres = postgres_listens()
    # Without PostgreSQL the HTTP path reports one error row saying so; nothing else may fail.
    errors = [e for e in raw["errors"] if postgres or e["scenario"] != "http"]
    assert errors == [], errors
    rows = {row["metric"]: row for row in summary["goals"]}
    rabbitmq = shutil.which("rabbitmqctl") is not None
    for metric in METRICS:
        matching = [row for name, row in rows.items() if name.startswith(metric)]
        assert matching, f"no row for {metric!r} in {sorted(rows)}"
        for row in matching:
            if "RabbitMQ" in metric and not rabbitmq:
                continue
            if metric.startswith(NEEDS_POSTGRES) and not postgres:
                continue
            assert row["generated"] is not None, row
            assert row["verdict"] in ("met", "MISSED", "figure"), row
            assert row["metric"] in table
    assert "| metric | goal | stock | generated | result |" in table
    for key in ("nproc", "python", "celery", "kombu", "redis-server"):
        assert key in summary["goals"][0] or key in raw["machine"], key
