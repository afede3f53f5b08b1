"""Submit jobs over HTTP and count their outcomes in the database, with bounded waits.

Outcomes come from the `jobs` table itself (psycopg on the test's own PostgreSQL cluster),
not from the API, so a web outage cannot hide or invent one:
- completed: status `succeeded`;
- started twice: `attempts > 1` (a worker claimed the job more than once: a redelivery);
- side effects twice: `side_effects > 1` (the job's effect ran more than once: a duplicate);
- lost: not `succeeded` by the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

POLL_SECONDS = 0.2
SUBMIT_TIMEOUT = 30


@dataclass(frozen=True)
class Row:
    id: int
    status: str
    attempts: int
    side_effects: int
    created_at: datetime
    updated_at: datetime
    task_id: str | None = None
    error: str | None = None

    @property
    def claimed_at(self) -> float:
        """Wall-clock time of the last claim (valid while the job is `running`)."""
        return self.updated_at.timestamp()


@dataclass
class Jobs:
    """Reads job rows from the service's database."""

    dsn: str

    def rows(self, ids: Iterable[int]) -> dict[int, Row]:
        import psycopg

        ids = sorted(set(ids))
        with psycopg.connect(self.dsn, connect_timeout=5) as connection:
            cursor = connection.execute(
                "SELECT id, status, attempts, side_effects, created_at, updated_at, task_id, "
                "error FROM jobs WHERE id = ANY(%s)",
                (ids,),
            )
            return {record[0]: Row(*record) for record in cursor.fetchall()}

    def named(self, prefix: str) -> dict[int, Row]:
        """Return the rows of every job whose name starts with prefix."""
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as connection:
            ids = [
                record[0]
                for record in connection.execute(
                    "SELECT id FROM jobs WHERE name LIKE %s", (prefix + "%",)
                ).fetchall()
            ]
        return self.rows(ids)

    def active_ids(self) -> list[int]:
        """Return the ids of the jobs that are queued or running."""
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as connection:
            cursor = connection.execute(
                "SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY id"
            )
            return [record[0] for record in cursor.fetchall()]

    def active(self) -> int:
        """Return how many jobs are queued or running."""
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as connection:
            cursor = connection.execute(
                "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
            )
            return cursor.fetchone()[0]

    def count_named(self, prefix: str) -> int:
        """Return how many jobs have a name starting with prefix (stored at all)."""
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as connection:
            cursor = connection.execute(
                "SELECT count(*) FROM jobs WHERE name LIKE %s", (prefix + "%",)
            )
            return cursor.fetchone()[0]


def outcome(rows: dict[int, Row], ids: Iterable[int]) -> dict[str, int]:
    """Count the four outcomes of a set of submitted jobs."""
    ids = list(ids)
    found = [rows[i] for i in ids if i in rows]
    return {
        "jobs": len(ids),
        "completed": sum(row.status == "succeeded" for row in found),
        "lost": len(ids) - sum(row.status == "succeeded" for row in found),
        "started_twice": sum(row.attempts > 1 for row in found),
        "side_effects_twice": sum(row.side_effects > 1 for row in found),
        "executions": sum(row.attempts for row in found),
    }


@dataclass
class Watch:
    """Polls rows until a condition holds; keeps the first time each claim was seen."""

    jobs: Jobs
    ids: list[int]
    # (job id, attempts) -> wall-clock time of that claim, read while the job was running.
    claims: dict[tuple[int, int], float] = field(default_factory=dict)
    last: dict[int, Row] = field(default_factory=dict)
    errors: int = 0

    def poll(self) -> dict[int, Row]:
        try:
            rows = self.jobs.rows(self.ids)
        except Exception:  # the database is down on purpose in one test: not yet
            self.errors += 1
            return self.last
        for row in rows.values():
            if row.status == "running":
                self.claims.setdefault((row.id, row.attempts), row.claimed_at)
        self.last = rows
        return rows

    def until(
        self,
        condition: Callable[[dict[int, Row]], Any],
        *,
        timeout: float,
        what: str,
        report: Callable[[], str],
        guard: Callable[[], str | None] | None = None,
        interval: float = POLL_SECONDS,
    ) -> Any:
        """Poll until condition(rows) is truthy; fail with what, the rows and the report."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.poll()
            value = condition(rows) if rows else None
            if value:
                return value
            stop = guard() if guard is not None else None
            if stop or time.monotonic() >= deadline:
                seen = {i: (r.status, r.attempts, r.side_effects) for i, r in rows.items()}
                reason = stop or f"not within {timeout:g} s"
                raise AssertionError(
                    f"{what}: {reason}; jobs (status, attempts, side effects): {seen}\n{report()}"
                )
            time.sleep(interval)

    def settled(self, timeout: float, report: Callable[[], str], guard=None) -> dict[int, Row]:
        """Wait until every job is succeeded, failed or cancelled (bounded)."""
        return self.until(
            lambda rows: (
                len(rows) == len(self.ids)
                and all(r.status in {"succeeded", "failed", "cancelled"} for r in rows.values())
                and rows
            ),
            timeout=timeout,
            what=f"jobs {self.ids} were not all settled",
            report=report,
            guard=guard,
        )

    def running(self, count: int, timeout: float, report: Callable[[], str]) -> dict[int, Row]:
        """Wait until at least `count` of the jobs are running; return those rows."""
        return self.until(
            lambda rows: (
                len(busy := {i: r for i, r in rows.items() if r.status == "running"}) >= count
                and busy
            ),
            timeout=timeout,
            what=f"{count} of jobs {self.ids} were not running together",
            report=report,
            interval=0.1,
        )
