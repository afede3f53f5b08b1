"""The machine's load: CPU counters, steal and busy shares, load average (/proc, stdlib only)."""

from __future__ import annotations


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
