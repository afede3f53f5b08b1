"""The booted variant every fault module shares, and how the tier prepares it.

tests/faults/conftest.py boots each variant once for all fault modules, with:
- TASK_TIME_LIMIT=10 for every role (the Redis visibility timeout and restore scan derive to
  seconds, not an hour), PUBLISH_TIMEOUT_SECONDS=2 and SWEEP_INTERVAL_SECONDS=5 (a lost
  publish is sweepable after 14 s and beat sweeps every 5 s), WORKER_CONCURRENCY=2 on the job
  queue's worker;
- a Redis broker with an fsynced append-only file and a PostgreSQL cluster of the test's own
  (tests/support/servers.py) that may be stopped;
- one task module added to the throw-away project before boot (poison_task.py, listed in the
  render's TASK_MODULES): a task that SIGKILLs its own worker child on every delivery.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from support.processes import Process, children
from support.stack import Stack
from support.variants import SUPPORTED

from .aof import trace_messages
from .observe import Jobs, Watch
from .report import Results

HERE = Path(__file__).resolve().parent
# One variant per broker, named by their ids in tests/variants.yml.
FAULT_VARIANT_IDS = {
    "redis": "defaults",
    "rabbitmq": "broker:rabbitmq-use_beat:false-queues:default-task_time_limit:60",
}
# Every role gets this hard limit: visibility timeout 25 s, restore scan every 2 s on Redis.
TIME_LIMIT = 10
JOB_CONCURRENCY = 2
# The web waits this long for the broker; a keyed job left without a task id is sweepable
# after celery.profile.unpublished_after() of it (2 x 2 + 10 = 14 s), an unkeyed one (stored
# with its task id) after stuck_after() (25 + 10 = 35 s), as a message the broker lost.
PUBLISH_TIMEOUT = 2
# Beat sends the sweep this often (Redis variant); the RabbitMQ variant has no beat, the
# tests run `operations sweep` at this pace, as an operator's cron would.
SWEEP_INTERVAL = 5
POISON_SOURCE = HERE / "poison_task.py"
PUBLISH_JOB = HERE / "publish_job.py"

# Bounds (seconds) of the waits the harness does.
WORKER_UP_SECONDS = 30
QUIET_SECONDS = 60
LOG_SECONDS = 20
OPERATION_SECONDS = 60


def fault_variants():
    supported = {variant.id: variant for variant in SUPPORTED}
    missing = [vid for vid in FAULT_VARIANT_IDS.values() if vid not in supported]
    assert not missing, f"fault variants missing from tests/variants.yml: {missing}"
    return [supported[vid] for vid in FAULT_VARIANT_IDS.values()]


@dataclass
class Faults:
    """A booted variant plus what the fault tests need: the database, the profile, figures."""

    stack: Stack
    jobs: Jobs
    profile: dict[str, Any]
    results: Results
    poison_task: str

    @property
    def broker(self) -> str:
        return self.stack.answers["broker"]

    @property
    def worker(self) -> Process:
        return self.stack.processes[f"worker-{self.stack.job_queue}"]

    @property
    def web(self) -> Process:
        return self.stack.processes["web"]

    @property
    def python(self) -> str:
        return str(self.stack.project / ".venv" / "bin" / "python")

    def report(self, headline: str = "") -> str:
        return self.stack.report(headline) + "\n" + self.stack.database.logs()

    def submit(self, prefix: str, durations: list[float]) -> list[int]:
        ids = []
        for index, duration in enumerate(durations):
            created = self.stack.post("/jobs", {"name": f"{prefix}-{index}", "duration": duration})
            assert created.status_code == 202, self.report(
                f"POST /jobs {prefix}-{index}: {created.status_code} {created.text}"
            )
            ids.append(created.json()["id"])
        return ids

    def watch(self, ids: list[int]) -> Watch:
        return Watch(self.jobs, ids)

    def worker_log(self) -> str:
        return self.worker.log.read_text(errors="replace")

    def wait_log(self, needle: str, what: str) -> None:
        self.stack.wait(
            lambda: needle in self.worker_log(), timeout=LOG_SECONDS, what=what, guard=False
        )

    def take_restore_lock_as_a_dead_worker(self) -> None:
        """Leave Redis's restore-scan lock held, as a worker killed inside its scan does.

        The worker takes the lock for a few ms every scan, so a kill lands inside it now and
        then; taking it here makes every run the worst case, with the worker's own expiry.
        """
        client = redis.Redis.from_url(self.stack.broker.url(), socket_timeout=5)
        with contextlib.closing(client):
            client.set(
                self.profile["restore_lock_key"],
                "killed-worker",
                px=int(self.profile["restore_lock_seconds"] * 1000),
            )

    def restore_state(self) -> str:
        """Describe Redis's restore lock and unacked index, for a failure report."""
        client = redis.Redis.from_url(self.stack.broker.url(), socket_timeout=5)
        with contextlib.closing(client):
            lock_ttl = client.pttl(self.profile["restore_lock_key"])
            unacked = client.zrange(self.profile["unacked_index_key"], 0, -1, withscores=True)
        return f"restore lock ttl {lock_ttl} ms; unacked index (tag, delivered at): {unacked}"

    def quiet(self) -> None:
        """Start each test from rest: the job worker runs with its children, no job is active."""
        worker = self.worker
        if not worker.alive():
            self.stack.restart_role(worker.name)
        self.stack.wait(
            lambda: len(children(worker.pid)) == JOB_CONCURRENCY,
            timeout=WORKER_UP_SECONDS,
            what=f"{worker.name} has not {JOB_CONCURRENCY} pool children",
        )

        def idle():
            return self.jobs.active() == 0

        self.stack.wait(idle, timeout=QUIET_SECONDS, what="jobs of an earlier test still active")

    def restart_worker(self) -> float:
        """Start the job worker again with the same command; return seconds until it beats."""
        worker = self.worker
        heartbeat = Path(worker.env["WORKER_HEARTBEAT_FILE"])
        heartbeat.unlink(missing_ok=True)
        started = time.monotonic()
        self.stack.restart_role(worker.name)
        self.stack.wait(
            heartbeat.exists, timeout=WORKER_UP_SECONDS, what="restarted worker never started"
        )
        return round(time.monotonic() - started, 1)

    def message_fates(self, ids: list[int]) -> dict[int, str]:
        """For each job that did not succeed: where its message went (Redis: from the AOF)."""
        rows = self.jobs.rows(ids)
        lost = [i for i in ids if i not in rows or rows[i].status != "succeeded"]
        fates = {i: f"status {rows[i].status if i in rows else 'not stored'}" for i in lost}
        if lost and self.broker == "redis" and getattr(self.stack.broker, "persistent", False):
            tasks = {rows[i].task_id: i for i in lost if i in rows and rows[i].task_id}
            traced = trace_messages(self.stack.broker.folder, set(tasks))
            for task_id, fate in traced.items():
                fates[tasks[task_id]] += f", task {task_id}: {fate} (broker AOF)"
        return fates

    def explain_lost(self, ids: list[int]) -> str:
        """Say which of the jobs did not succeed and, on Redis, where their messages went."""
        return "\n".join(f"job {i}: {fate}" for i, fate in self.message_fates(ids).items())

    def restart_dead_roles(self) -> list[str]:
        """Start every role that is not running again; wait until the web is ready."""
        dead = [name for name, process in self.stack.processes.items() if not process.alive()]
        for name in dead:
            self.stack.restart_role(name)
        if dead:
            self.stack.wait(
                lambda: self.stack.get("/health/ready").status_code == 200,
                timeout=QUIET_SECONDS,
                what=f"not ready after starting {dead} again",
                guard=False,
            )
        return dead

    def cancel_active(self) -> list[int]:
        """Cancel every queued or running job through the API (after a failed test)."""
        ids = self.jobs.active_ids()
        for job_id in ids:
            self.stack.post(f"/jobs/{job_id}/cancel", {})
        return ids

    def run_script(self, argv: list[str], what: str) -> subprocess.CompletedProcess:
        """Run the service's interpreter with a worker's environment (an operator's shell)."""
        completed = subprocess.run(
            [self.python, *argv],
            cwd=self.stack.project,
            env=dict(self.worker.env),
            capture_output=True,
            text=True,
            timeout=OPERATION_SECONDS,
        )
        assert completed.returncode == 0, self.report(
            f"{what}: exit {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
        )
        return completed

    def operation(self, *arguments: str) -> Any:
        """Run `python -m <package>.operations ...` as an operator would; return its JSON."""
        completed = self.run_script(
            ["-m", f"{self.stack.package}.operations", *arguments], f"operations {arguments}"
        )
        return json.loads(completed.stdout)

    def publish_job(self, task: str, name: str, duration: float = 0.0) -> dict[str, Any]:
        """Store a job with the service's job store and send `task` for it to the job queue."""
        completed = self.run_script(
            [str(PUBLISH_JOB), self.stack.package, task, self.stack.job_queue, name,
             str(duration)],
            f"publish {task}",
        )  # fmt: skip
        return json.loads(completed.stdout.strip().splitlines()[-1])


def read_profile(stack: Stack, hard_limit: int, publish_timeout: float) -> dict[str, Any]:
    """Derive the timings from the service's own celery.profile for a hard limit."""
    python = stack.project / ".venv" / "bin" / "python"
    code = (
        "import json; from kombu.transport import redis;"
        f" from {stack.package}.celery import profile as p; h = {hard_limit};"
        f" t = {publish_timeout!r};"
        "print(json.dumps({'hard_limit': h, 'soft_limit': p.soft_time_limit(h),"
        " 'visibility_timeout': p.visibility_timeout(h),"
        " 'restore_scan_interval': p.restore_scan_interval(h),"
        " 'restore_lock_seconds': p.hardened_settings('redis', h)['broker_transport_options']"
        "['unacked_mutex_expire'],"
        " 'restore_lock_key': redis.Channel.unacked_mutex_key,"
        " 'unacked_index_key': redis.Channel.unacked_index_key,"
        " 'grace_period_seconds': p.grace_period_seconds(h),"
        " 'max_deliveries': p.MAX_DELIVERIES, 'publish_timeout': t,"
        " 'unpublished_after': p.unpublished_after(t), 'stuck_after': p.stuck_after(h)}))"
    )
    completed = subprocess.run(
        [str(python), "-c", code], cwd=stack.project, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def inject_poison_task(stack: Stack) -> str:
    """Add poison_task.py to the throw-away project as <package>.tasks.poison; return its name.

    The worker imports it through the app's include list like every task module (the render's
    celery/apps.py TASK_MODULES gets one more line); nothing else of the service changes.
    """
    package = stack.package
    source = stack.project / "src" / package
    (source / "tasks" / "poison.py").write_text(POISON_SOURCE.read_text())
    apps = source / "celery" / "apps.py"
    text = apps.read_text()
    anchor = f'    "{package}.tasks.diagnostics",\n'
    assert text.count(anchor) == 1, f"TASK_MODULES of {apps} has no line {anchor!r}"
    apps.write_text(text.replace(anchor, anchor + f'    "{package}.tasks.poison",\n'))
    return f"{package}.tasks.poison.kill_own_child"
