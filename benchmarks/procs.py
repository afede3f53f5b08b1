"""Process bookkeeping for the benchmark: every process is started here and stopped by PID.

Standard library only: both the orchestrator (root venv) and the driver (the rendered
service's venv) import it. Each child starts in its own session, so stopping it by its PID
(= its process-group id) also stops the children it forked (prefork pool, gunicorn workers).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """A benchmark step failed or timed out."""


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    """Poll condition() until it returns a truthy value; raise BenchError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # a server that is still starting refuses connections
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Proc:
    """One started process: its argv, PID, log file and start time."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path, started: float) -> None:
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log = log
        self.started = started

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Registry:
    """Start processes and guarantee they are all stopped (by PID), also on failure."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self._count = 0
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> Proc:
        self._count += 1
        log = self.log_dir / f"{self._count:03d}-{name}.log"
        handle = log.open("wb")
        started = time.time()
        popen = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        proc = Proc(name, popen, log, started)
        self.procs.append(proc)
        return proc

    def send_signal(self, proc: Proc, signum: int, group: bool = False) -> None:
        """Send a signal to the process (or its whole group) if it still runs."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, signum)
            else:
                os.kill(proc.pid, signum)

    def stop(self, proc: Proc, timeout: float = 8.0, signum: int = signal.SIGTERM) -> None:
        """Stop a process and its group: signal, wait up to timeout, then SIGKILL the group."""
        if proc.alive():
            self.send_signal(proc, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=timeout)
        # Whatever is left in its process group (pool children, gunicorn workers).
        self.send_signal(proc, signal.SIGKILL, group=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, timeout=3.0)


def children_of(pid: int) -> list[int]:
    """Return the PIDs whose parent is pid (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command may contain spaces and parentheses: parse after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_times() -> list[int]:
    """Return the aggregate CPU counters of /proc/stat (user ... steal)."""
    with open("/proc/stat") as handle:
        return [int(value) for value in handle.readline().split()[1:9]]


def steal_percent(before: list[int], after: list[int]) -> float | None:
    """Return the share of CPU time stolen by the hypervisor between two readings."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    if total <= 0:
        return None
    return round(100.0 * delta[7] / total, 1)


def busy_percent(before: list[int], after: list[int]) -> float | None:
    """Return the share of CPU time not idle/iowait between two readings (all processes)."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    if total <= 0:
        return None
    return round(100.0 * (total - delta[3] - delta[4]) / total, 1)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as handle:
        return [float(value) for value in handle.read().split()[:3]]
