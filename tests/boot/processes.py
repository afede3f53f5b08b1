"""Start the service's processes with their exact argv, log each to a file, stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
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


def process_tree(root: int) -> dict[int, int]:
    """Return {pid: start time} of a process and all its descendants that are alive."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry))
                starts[int(entry)] = stat[2]
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            tree[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return tree


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
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pgid:
                members.append(int(entry))
    return sorted(members)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file (or why there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Process:
    """One long-running role process, started in a session of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    grace_seconds: float
    popen: subprocess.Popen | None = None
    tree: dict[int, int] = field(default_factory=dict)
    stop_seconds: float | None = None

    def start(self) -> None:
        """Start the argv as given; argv[0] is found on the environment's PATH."""
        with self.log.open("ab") as log:
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

    def remember_tree(self) -> None:
        """Record this process and its children (gunicorn workers, prefork children)."""
        if self.alive():
            self.tree.update(process_tree(self.pid))

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

    def describe(self) -> str:
        state = "not started"
        if self.popen is not None:
            code = self.popen.poll()
            state = f"pid {self.popen.pid}, " + ("running" if code is None else f"exited {code}")
        return f"{self.name} ({state}): {' '.join(self.argv)}"


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    report: Callable[[], str],
    interval: float = 0.5,
    guard: Callable[[], str | None] | None = None,
) -> Any:
    """Poll `check` until it returns a truthy value; fail with `what` and the report otherwise.

    `guard` returns a reason to stop early (a process died). Exceptions from `check` count as
    "not yet" and the last one is shown.
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
            raise AssertionError(f"{what}: {reason}; last seen: {last!r}\n{report()}")
        time.sleep(interval)
