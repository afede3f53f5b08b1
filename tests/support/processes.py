"""Start processes in sessions of their own, watch them through /proc, stop them by PID.

Standard library only: the tests (the template's venv) and the benchmark driver (a rendered
service's venv) both import it. Each process starts in a session of its own, so its PID is
also its process group: stopping the group stops the children it forked (prefork pool,
gunicorn workers), and nothing outside it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 40
POLL_SECONDS = 0.2


def close_all(closers: list[tuple[str, Callable[[], object] | None]]) -> list[str]:
    """Call every (name, closer), going on after a failure; return what failed."""
    errors = []
    for name, closer in closers:
        if closer is None:
            continue
        try:
            closer()
        except Exception as error:  # keep tearing down the rest
            errors.append(f"{name}: {error!r}")
    return errors


# --- /proc ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """Return (parent pid, process group, start time in ticks) of a live process, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _live_stats() -> dict[int, tuple[int, int, int]]:
    """Return the _stat of every live process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    return stats


def process_tree(root: int) -> dict[int, int]:
    """Return {pid: start time} of a process and all its descendants that are alive."""
    stats = _live_stats()
    parents: dict[int, list[int]] = {}
    for pid, (parent, _, _) in stats.items():
        parents.setdefault(parent, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            tree[pid] = stats[pid][2]
            todo.extend(parents.get(pid, []))
    return tree


def children(pid: int) -> list[int]:
    """Return the live direct children of a process (a prefork pool's children)."""
    return sorted(child for child, stat in _live_stats().items() if stat[0] == pid)


def start_times(pids: Sequence[int]) -> dict[int, int]:
    """Return {pid: start time in ticks}, so a reused PID is never taken for the same process."""
    return {pid: stat[2] for pid in pids if (stat := _stat(pid)) is not None}


def still_alive(tree: Mapping[int, int]) -> list[int]:
    """Return the PIDs of `tree` that are still the same live processes (start time matches)."""
    alive = []
    for pid, started in tree.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == started:
            alive.append(pid)
    return sorted(alive)


def process_group(pgid: int) -> list[int]:
    """Return the PIDs of the live processes in a process group."""
    return sorted(pid for pid, stat in _live_stats().items() if stat[1] == pgid)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file (or why there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --- one process ---------------------------------------------------------------------------


@dataclass
class Process:
    """One long-running process, started in a session of its own, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    cwd: Path | None
    log: Path
    # How long SIGTERM may take before the process counts as late (its grace period).
    grace_seconds: float = 10.0
    popen: subprocess.Popen | None = None
    tree: dict[int, int] = field(default_factory=dict)
    stop_seconds: float | None = None
    # Wall-clock time of the last start().
    started: float = 0.0

    def start(self) -> None:
        """Start the argv as given; argv[0] is found on the environment's PATH."""
        with self.log.open("ab") as log:
            self.started = time.time()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log, lines)

    def remember_tree(self) -> None:
        """Record this process and its children (gunicorn workers, prefork children)."""
        if self.alive():
            self.tree.update(process_tree(self.pid))

    def send_signal(self, signum: int, *, group: bool = False) -> None:
        """Send a signal to the process (or its whole group) if it still runs."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        """Send SIGTERM to the main process only, as a container runtime would."""
        self.remember_tree()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def wait_exit(self, started: float) -> bool:
        """Wait up to the grace period (from `started`) for the process to exit."""
        deadline = started + self.grace_seconds
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                self.stop_seconds = round(time.monotonic() - started, 1)
                return True
            time.sleep(POLL_SECONDS)
        return self.popen.poll() is not None

    def leftovers(self) -> list[int]:
        """Return the PIDs of this process's tree that are still running."""
        left = set(still_alive(self.tree))
        if self.popen is not None:
            # The role's session: anything it spawned and did not reap stays in its group.
            left.update(process_group(self.popen.pid))
        return sorted(left)

    def kill(self) -> None:
        """SIGKILL the whole process group and every recorded PID (teardown, also on failure)."""
        if self.popen is None:
            return
        self.remember_tree()
        for pid in sorted(set(still_alive(self.tree)) | set(process_group(self.popen.pid))):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 8.0, signum: int = signal.SIGTERM) -> None:
        """Signal the main process, wait up to timeout for it, then kill() what is left."""
        if self.alive():
            self.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill()

    def describe(self) -> str:
        state = "not started"
        if self.popen is not None:
            code = self.popen.poll()
            state = f"pid {self.popen.pid}, " + ("running" if code is None else f"exited {code}")
        return f"{self.name} ({state}): {' '.join(self.argv)}"


class Registry:
    """Start processes with numbered logs in one folder; stop every one by PID, also at exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: list[Process] = []
        self._count = 0
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> Process:
        self._count += 1
        process = Process(
            name=name,
            argv=list(argv),
            env=dict(env) if env is not None else None,
            cwd=Path(cwd) if cwd is not None else None,
            log=self.log_dir / f"{self._count:03d}-{name}.log",
        )
        process.start()
        self.processes.append(process)
        return process

    def stop(self, process: Process, timeout: float = 8.0, signum: int = signal.SIGTERM) -> None:
        """Stop a process and its group: signal, wait up to timeout, then SIGKILL the rest."""
        process.stop(timeout, signum)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.processes)):
            self.stop(process, timeout=3.0)


def run_to_log(
    argv: list[str], *, cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> int | None:
    """Run a one-off command to its end, output in log; its exit code, None if it ran too long."""
    with log.open("wb") as out:
        try:
            completed = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None
    return completed.returncode


# --- bounded waits -------------------------------------------------------------------------


class WaitTimeout(AssertionError):
    """A bounded wait ran out, or its guard stopped it early."""


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    report: Callable[[], str] | None = None,
    interval: float = 0.5,
    guard: Callable[[], str | None] | None = None,
) -> Any:
    """Poll `check` until it returns a truthy value; raise WaitTimeout with `what` otherwise.

    `guard` returns a reason to stop early (a process died); `report` adds the state of
    everything to the failure. Exceptions from `check` count as "not yet" and the last one
    is shown.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    attempts = 0
    while True:
        attempts += 1
        try:
            value = check()
        except Exception as error:  # not yet: keep the reason for the failure message
            value, last = None, f"{type(error).__name__}: {error}"
        else:
            if value:
                return value
            last = value
        stop = guard() if guard is not None else None
        if stop or time.monotonic() >= deadline:
            reason = stop or f"not within {timeout:g} s ({attempts} attempts)"
            details = f"\n{report()}" if report is not None else ""
            raise WaitTimeout(f"{what}: {reason}; last seen: {last!r}{details}")
        time.sleep(interval)
