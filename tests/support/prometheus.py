"""A real Prometheus for the tests: Debian's `prometheus` package, installed when missing.

`ensure_prometheus()` returns the paths of `prometheus` and `promtool` (apt-get install, bounded,
when they are missing and the tests run as root, as CI does). `PrometheusServer` runs one on
127.0.0.1 with a given scrape configuration, in a folder of its own, and answers queries
through its HTTP API. Standard library and requests only; stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from .processes import Process, wait_for
from .servers import HOST, free_port

APT_TIMEOUT = 600
START_TIMEOUT = 60


def ensure_prometheus() -> tuple[str, str]:
    """Return (prometheus, promtool), installing Debian's package first when they are missing."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("prometheus/promtool are missing: apt-get install prometheus")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
    ):
        subprocess.run(
            command, check=True, env=environment, timeout=APT_TIMEOUT, capture_output=True
        )
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        raise RuntimeError("apt-get install prometheus did not provide prometheus and promtool")
    return prometheus, promtool


class PrometheusServer:
    """One Prometheus on 127.0.0.1, scraping the given jobs, with the given rule files."""

    def __init__(self, folder: Path, scrape_configs: list[dict[str, Any]], rule_files=()):
        self.folder = folder
        self.port = free_port()
        self.binary, self.promtool = ensure_prometheus()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            # The worker of `default` asks the workers who consumes what (1 s) on each scrape.
            "global": {
                "scrape_interval": "2s",
                "scrape_timeout": "1900ms",
                "evaluation_interval": "2s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": scrape_configs,
        }
        self.config = folder / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = Process(
            name="prometheus",
            argv=[
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=warn",
            ],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(folder)},
            cwd=folder,
            log=folder / "prometheus.log",
            grace_seconds=10,
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        subprocess.run([self.promtool, "check", "config", str(self.config)], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        self.process.start()
        wait_for(
            self._ready,
            timeout=START_TIMEOUT,
            what="Prometheus never became ready",
            report=self.process.tail,
        )

    def _ready(self) -> bool:
        try:
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def query(self, expression: str) -> list[dict[str, Any]]:
        """Run an instant query; return the result vector."""
        response = requests.get(
            self.url + "/api/v1/query", params={"query": expression}, timeout=10
        )
        body = response.json()
        assert body["status"] == "success", f"{expression}: {body}"
        return body["data"]["result"]

    def value(self, expression: str) -> float | None:
        """Return the single value of an instant query, or None when it has no sample."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else None

    def describe_targets(self) -> str:
        """Return each target's job, health and last error, for a failure message."""
        return "\n".join(
            f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}"
            for t in self.targets()
        )

    def targets(self) -> list[dict[str, Any]]:
        """Return the active scrape targets."""
        body = requests.get(self.url + "/api/v1/targets", timeout=10).json()
        return body["data"]["activeTargets"]

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts that are pending or firing."""
        return requests.get(self.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def stop(self) -> None:
        self.process.stop()

    def tail(self) -> str:
        return self.process.tail()


def wait_value(server: PrometheusServer, expression: str, predicate, *, timeout: float, what: str):
    """Poll a query until predicate(value) holds; return the value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = server.value(expression)
        if value is not None and predicate(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: {expression} = {value} after {timeout} s\n{server.tail()}")
