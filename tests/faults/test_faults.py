"""Tier 5, faults: kill workers, restart the broker, stop the database, under real load.

One variant per broker (from tests/variants.yml): Redis + PostgreSQL and RabbitMQ + PostgreSQL,
each booted once for every fault module (tests/faults/conftest.py; harness.py says how: a
hard limit of 10 s for every role, so the Redis visibility timeout and restore scan derive to
seconds, not an hour, two children on the job queue's worker, a Redis broker with an fsynced
append-only file and a PostgreSQL cluster of the test's own that may be stopped). Each test
submits a known set of jobs over HTTP (POST /jobs with a duration), breaks something, and
counts the outcomes in the jobs table: completed, lost (not succeeded by a bounded deadline),
started twice (attempts > 1) and side effects twice (side_effects > 1). The figures are
printed as a table (pytest -s) and written as JSON to pytest's temporary folder.
docs/faults.md says what each test proves.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support.processes import children, start_times, still_alive, tail

from .harness import JOB_CONCURRENCY, LOG_SECONDS, Faults
from .observe import Row, Watch, outcome

RETRY_LINE = re.compile(r"\[([0-9a-f-]{36})\] retry: Retry in (\d+)s")
RESEND = Path(__file__).resolve().parent / "resend.py"

# Bounds (seconds) of every wait.
RUNNING_SECONDS = 20
SETTLE_SECONDS = 40
CHILD_EXIT_SECONDS = 3
# A requeued message (child killed, RabbitMQ connection closed) must be claimed again soon:
# at worst behind the two queued 3 s jobs, and well below the 25 s visibility timeout, so it
# is the requeue that brought it back, not Redis's restore scan.
CHILD_REDELIVERY_SECONDS = 12
RABBIT_REDELIVERY_SECONDS = 20
# Redis: a claim of the redelivered message within the visibility timeout + one scan + this.
REDIS_REDELIVERY_SLACK = 3
BROKER_DOWN_SECONDS = 5
LOAD_BEFORE_SECONDS = 3
LOAD_AFTER_SECONDS = 6
PRODUCER_INTERVAL = 0.4
PRODUCER_HTTP_TIMEOUT = 30
PRODUCER_MAX_POSTS = 200
DB_DOWN_SECONDS = 8
DB_RECOVERY_SECONDS = 60
READY_SECONDS = 30
HOL_LONG = 5.0  # the longest duration the API accepts with TASK_TIME_LIMIT=10
HOL_SHORT = 0.5
HOL_SHORTS = 4
HOL_MAX_WAIT = 1.0

pytestmark = pytest.mark.timeout(600)


def claim_delays(watch: Watch, rows: dict[int, Row], since: float) -> dict[int, dict]:
    """For every job claimed twice: first claim, second claim and the kill-to-claim delay."""
    delays = {}
    for job_id, row in rows.items():
        if row.attempts > 1:
            first = watch.claims.get((job_id, 1))
            second = watch.claims.get((job_id, 2))
            delays[job_id] = {
                "after_delivery": round(second - first, 1) if first and second else None,
                "after_fault": round(second - since, 1) if second else None,
            }
    return delays


# --- 1. a prefork child killed mid-task ---------------------------------------------------


def test_child_sigkill_mid_task_is_redelivered(faults):
    """1. SIGKILL one busy prefork child: its job is requeued at once and completes; 0 lost."""
    faults.quiet()
    worker = faults.worker
    ids = faults.submit("child-kill", [3.0] * 4)
    watch = faults.watch(ids)
    busy = watch.running(JOB_CONCURRENCY, RUNNING_SECONDS, faults.report)
    pool = children(worker.pid)
    assert len(pool) == JOB_CONCURRENCY, faults.report(f"pool children of {worker.pid}: {pool}")
    victim = pool[0]
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    rows = watch.settled(SETTLE_SECONDS, faults.report)
    counts = outcome(rows, ids)
    delays = claim_delays(watch, rows, killed_at)
    faults.results.record(
        "1 child SIGKILL",
        **counts,
        recovery_seconds=max((d["after_fault"] or 0) for d in delays.values()) if delays else None,
        note=f"killed child {victim} of {worker.pid}; running jobs {sorted(busy)}",
    )
    assert counts["lost"] == 0 and counts["completed"] == len(ids), faults.report(str(counts))
    # Exactly the killed child's job started again (reject_on_worker_lost requeued it).
    assert counts["started_twice"] == 1, faults.report(f"{counts} {delays}")
    assert counts["side_effects_twice"] == 0, faults.report(str(counts))
    (delay,) = delays.values()
    assert delay["after_fault"] is not None, faults.report(f"redelivery not seen: {delays}")
    assert delay["after_fault"] <= CHILD_REDELIVERY_SECONDS, faults.report(str(delays))
    assert worker.alive() and len(children(worker.pid)) == JOB_CONCURRENCY, faults.report(
        "the worker did not replace its child"
    )


# --- 2. the worker's main process killed mid-task -----------------------------------------


def test_worker_main_sigkill_mid_task_loses_nothing(faults):
    """2. SIGKILL the worker's main process: children die too; restarted, 0 lost, timely."""
    faults.quiet()
    worker = faults.worker
    ids = faults.submit("main-kill", [3.0] * 4)
    watch = faults.watch(ids)
    busy = watch.running(JOB_CONCURRENCY, RUNNING_SECONDS, faults.report)
    pool = start_times(children(worker.pid))
    if faults.broker == "redis":
        # The worst case: the kill lands inside a restore scan, its lock left held.
        faults.take_restore_lock_as_a_dead_worker()
    killed_at = time.time()
    os.kill(worker.pid, signal.SIGKILL)
    worker.popen.wait(timeout=10)
    # PR_SET_PDEATHSIG: the pool children die with their parent, no orphan finishes a task.
    deadline = time.monotonic() + CHILD_EXIT_SECONDS
    while still_alive(pool) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = still_alive(pool)
    assert not orphans, faults.report(f"pool children outlived the main process: {orphans}")
    worker_up = faults.restart_worker()
    vt = faults.profile["visibility_timeout"]
    scan = faults.profile["restore_scan_interval"]
    settle_bound = vt + scan + SETTLE_SECONDS if faults.broker == "redis" else SETTLE_SECONDS
    rows = watch.settled(settle_bound, faults.report)
    counts = outcome(rows, ids)
    delays = claim_delays(watch, rows, killed_at)
    recovery = max((d["after_fault"] or 0) for d in delays.values()) if delays else None
    faults.results.record(
        "2 main SIGKILL + restart",
        **counts,
        recovery_seconds=recovery,
        note=f"worker up again in {worker_up} s; redelivery per job "
        f"(s after first delivery / after kill): {list(delays.values())}",
    )
    assert counts["lost"] == 0 and counts["completed"] == len(ids), faults.report(str(counts))
    # The two running jobs, and only they, started twice; none settled twice.
    assert set(delays) == set(busy) and counts["started_twice"] == len(busy), faults.report(
        f"{counts} {delays} running at the kill: {sorted(busy)}"
    )
    assert counts["side_effects_twice"] == 0, faults.report(str(counts))
    for job_id, delay in delays.items():
        assert delay["after_delivery"] is not None, faults.report(f"{job_id}: {delays}")
        if faults.broker == "redis":
            # Nothing requeues on Redis: the restore scan brings the message back once it is
            # older than the visibility timeout, and no sooner (that would duplicate work);
            # the dead worker's scan lock has expired by then. Later, only the sweeper would.
            assert vt - 1 <= delay["after_delivery"] <= vt + scan + REDIS_REDELIVERY_SLACK, (
                faults.report(
                    f"job {job_id} redelivered {delay} (vt {vt} s, scan {scan} s); "
                    + faults.restore_state()
                )
            )
        else:
            # RabbitMQ requeues on connection close; the restarted worker takes them at once.
            assert delay["after_fault"] <= RABBIT_REDELIVERY_SECONDS, faults.report(str(delays))


# --- 3. SIGTERM: a rolling restart --------------------------------------------------------


def test_worker_sigterm_finishes_running_tasks_and_keeps_the_rest(faults):
    """3. SIGTERM with tasks running and queued: running ones finish, the rest wait; 0 lost."""
    faults.quiet()
    worker = faults.worker
    ids = faults.submit("sigterm", [4.0] * 4)
    watch = faults.watch(ids)
    busy = watch.running(JOB_CONCURRENCY, RUNNING_SECONDS, faults.report)
    started = time.monotonic()
    worker.terminate()
    exited = worker.wait_exit(started)
    assert exited, faults.report(
        f"worker still running {worker.grace_seconds} s (its grace period) after SIGTERM"
    )
    at_exit = faults.jobs.rows(ids)
    finished = sorted(i for i in busy if at_exit[i].status == "succeeded")
    waiting = sorted(i for i in ids if i not in busy)
    worker_up = faults.restart_worker()
    rows = watch.settled(SETTLE_SECONDS, faults.report)
    counts = outcome(rows, ids)
    faults.results.record(
        "3 SIGTERM + restart",
        **counts,
        recovery_seconds=worker.stop_seconds,
        note=f"exit {worker.stop_seconds} s after SIGTERM (grace {worker.grace_seconds} s); "
        f"running finished before exit {len(finished)}/{len(busy)}; "
        f"queued kept {len(waiting)}; worker up again in {worker_up} s",
    )
    assert counts["lost"] == 0 and counts["completed"] == len(ids), faults.report(str(counts))
    # Warm shutdown: the running tasks ran to the end before the worker exited ...
    assert finished == sorted(busy), faults.report(f"at exit: {at_exit}")
    # ... and the messages it had not started stayed with the broker: never claimed, then run
    # once by the restarted worker.
    assert all(at_exit[i].attempts == 0 for i in waiting), faults.report(f"at exit: {at_exit}")
    assert counts["started_twice"] == 0 and counts["side_effects_twice"] == 0, faults.report(
        str(counts)
    )


# --- 4. the broker restarted under load ---------------------------------------------------


@dataclass
class Producer:
    """POSTs jobs at a steady pace until stopped; remembers every answer."""

    faults: Faults
    prefix: str
    answers: list[tuple[float, int, int | None]]
    stop: threading.Event
    name: str

    def run(self) -> None:
        index = 0
        while not self.stop.is_set() and index < PRODUCER_MAX_POSTS:
            body = {"name": f"{self.prefix}-{self.name}-{index}", "duration": 0.2}
            index += 1
            try:
                response = self.faults.stack.post("/jobs", body, timeout=PRODUCER_HTTP_TIMEOUT)
                code = response.status_code
                job_id = response.json().get("id") if code == 202 else None
            except requests.RequestException:
                code, job_id = -1, None
            self.answers.append((time.time(), code, job_id))
            self.stop.wait(PRODUCER_INTERVAL)


def test_broker_restart_under_load_gives_503_and_loses_nothing(faults):
    """4. Broker restarted under load: 503 while down, every 202 job completes, no restarts."""
    faults.quiet()
    stack = faults.stack
    pids = {name: process.pid for name, process in stack.processes.items()}
    prefix = f"broker-restart-{uuid.uuid4().hex[:6]}"
    answers: list[tuple[float, int, int | None]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=Producer(faults, prefix, answers, stop, str(n)).run, daemon=True)
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_BEFORE_SECONDS)
        down_at = time.time()
        stack.broker.outage()
        try:
            time.sleep(BROKER_DOWN_SECONDS)
        finally:
            stack.broker.restore()
        up_at = time.time()
        time.sleep(LOAD_AFTER_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=PRODUCER_HTTP_TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads), faults.report("producer hung")
    codes = [code for _, code, _ in answers]
    accepted = [job_id for _, code, job_id in answers if code == 202]
    refused = codes.count(503)
    after = [when for when, code, _ in answers if code == 202 and when > up_at]
    watch = faults.watch(accepted)
    vt = faults.profile["visibility_timeout"]
    scan = faults.profile["restore_scan_interval"]
    settle_bound = vt + scan + SETTLE_SECONDS if faults.broker == "redis" else SETTLE_SECONDS * 2
    rows = watch.settled(settle_bound, lambda: faults.explain_lost(accepted) + faults.report())
    drained = round(time.time() - up_at, 1)
    counts = outcome(rows, accepted)
    stored = faults.jobs.count_named(prefix)
    faults.results.record(
        "4 broker restart under load",
        **counts,
        recovery_seconds=round(min(after) - up_at, 1) if after else None,
        note=f"202: {len(accepted)}, 503: {refused}, other: "
        f"{len(codes) - len(accepted) - refused}; down {round(up_at - down_at, 1)} s; "
        f"all accepted settled {drained} s after restart",
    )
    assert set(codes) <= {202, 503}, faults.report(f"answers other than 202/503: {codes}")
    assert refused >= 1, faults.report(f"no 503 while the broker was down: {codes}")
    assert after, faults.report("no job was accepted after the broker came back")
    # A 503 stored nothing: the table holds exactly the accepted jobs.
    assert stored == len(accepted), faults.report(f"{stored} stored, {len(accepted)} accepted")
    assert counts["lost"] == 0 and counts["completed"] == len(accepted), faults.report(
        f"{counts}: a 202 job was lost"
    )
    assert counts["side_effects_twice"] == 0, faults.report(str(counts))
    # The workers (and every other role) reconnected by themselves.
    now = {name: process.pid for name, process in stack.processes.items()}
    assert now == pids and not stack.dead(), faults.report("a role was restarted or died")


# --- 5. the database stopped --------------------------------------------------------------


def test_database_outage_gives_503_and_tasks_retry_until_it_is_back(faults):
    """5. Database down: ready 503; tasks retry with backoff and complete once it is back."""
    faults.quiet()
    stack = faults.stack
    ids = faults.submit("db-outage", [2.0] * 4)
    watch = faults.watch(ids)
    watch.running(JOB_CONCURRENCY, RUNNING_SECONDS, faults.report)
    log_offset = len(faults.worker_log())
    down_at = time.monotonic()
    stack.database.outage()
    try:
        ready = stack.wait(
            lambda: (response := stack.get("/health/ready")).status_code == 503 and response.json(),
            timeout=READY_SECONDS,
            what="/health/ready stayed 200 with the database down",
        )
        assert ready["checks"]["database"]["ok"] is False, faults.report(str(ready))
        assert ready["checks"]["broker"]["ok"] is True, faults.report(str(ready))
        created = stack.post("/jobs", {"name": "db-outage-refused", "duration": 0})
        refused = created.status_code
        remaining = DB_DOWN_SECONDS - (time.monotonic() - down_at)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        down_for = round(time.monotonic() - down_at, 1)
        stack.database.restore()
    up_at = time.time()
    stack.wait(
        lambda: stack.get("/health/ready").status_code == 200,
        timeout=READY_SECONDS,
        what="/health/ready did not recover after the database came back",
    )
    # Once ready, the web takes jobs at once. Not the proof of database.py's checkout poll: the
    # requests that failed during the outage may already have made SQLAlchemy drop a web
    # process's pool; the service's own tests/test_database.py proves the poll.
    back = [stack.post("/jobs", {"name": f"db-back-{i}", "duration": 0}) for i in range(12)]
    rows = watch.settled(DB_RECOVERY_SECONDS, faults.report)
    drained = round(time.time() - up_at, 1)
    counts = outcome(rows, ids)
    # Celery logs "Task <name>[<task id>] retry: Retry in <n>s: OperationalError(...)".
    backoff: dict[str, list[int]] = {}
    for task_id, seconds in RETRY_LINE.findall(faults.worker_log()[log_offset:]):
        backoff.setdefault(task_id, []).append(int(seconds))
    retries = sum(len(countdowns) for countdowns in backoff.values())
    longest = max(backoff.values(), key=len, default=[])
    faults.results.record(
        "5 database stopped",
        **counts,
        recovery_seconds=drained,
        note=f"down {down_for} s; ready 503 while down; POST /jobs while down: {refused}; "
        f"POST /jobs after: {sorted({r.status_code for r in back})}; "
        f"task retries logged: {retries}, longest countdown series {longest}",
    )
    assert refused == 503, faults.report(
        f"POST /jobs with the database down answered {refused}: {created.text}"
    )
    assert [r.status_code for r in back] == [202] * len(back), faults.report(
        f"POST /jobs right after the database came back: {[r.text for r in back]}"
    )
    assert retries >= 1, faults.report("no task retry was logged during the outage")
    # Exponential backoff with Celery's full jitter: retry n waits a random 0..2**n s (factor 1),
    # so the bound doubles while the draws need not grow. Every countdown is within its bound,
    # and some went past the first one (all draws <= 1 s over every series: ~1e-5).
    over = {
        task_id: series
        for task_id, series in backoff.items()
        if any(seconds > 2**retry for retry, seconds in enumerate(series))
    }
    assert not over, faults.report(f"countdowns past 2**retries s: {over}")
    assert len(longest) >= 2 and max(max(s) for s in backoff.values()) > 1, faults.report(
        str(backoff)
    )
    assert counts["lost"] == 0 and counts["completed"] == len(ids), faults.report(str(counts))
    assert counts["side_effects_twice"] == 0, faults.report(str(counts))
    assert not stack.dead(), faults.report("a role died during the database outage")


# --- 6. the early guard: redelivery of a settled or cancelled job -------------------------


class Resender:
    """The worker app's send_task in a process of its own (tests/faults/resend.py)."""

    def __init__(self, faults: Faults) -> None:
        stack = faults.stack
        routes = stack.diagnostics()["routes"]
        (self.task,) = [name for name in routes if name.endswith(".process_job")]
        env = dict(faults.worker.env)
        env["WORKER_HEARTBEAT_FILE"] = str(stack.folder / "resend.heartbeat")
        self.log = stack.folder / "resend.log"
        python = str(stack.project / ".venv" / "bin" / "python")
        self.popen = subprocess.Popen(
            [python, str(RESEND), stack.package, self.task],
            cwd=stack.project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            text=True,
            start_new_session=True,
        )
        line = self._line()
        assert line == "ready", f"resend helper: {line!r}\n{tail(self.log)}"

    def _line(self) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.popen.stdout.readline()))
        reader.start()
        reader.join(timeout=LOG_SECONDS)
        return result[0].strip() if result else "(no answer)"

    def send(self, job_id: int) -> str:
        task_id = f"resend-{uuid.uuid4()}"
        self.popen.stdin.write(f"{job_id} {task_id}\n")
        self.popen.stdin.flush()
        line = self._line()
        assert line == f"sent {task_id}", f"resend helper: {line!r}\n{tail(self.log)}"
        return task_id

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def test_early_guard_runs_side_effects_once(faults):
    """6. Redelivery of a settled, running or cancelled job: the side effect runs at most once."""
    faults.quiet()
    stack = faults.stack
    resender = Resender(faults)
    try:
        # a) settled, then redelivered: the guard skips it before any work.
        (settled_id,) = faults.submit("guard-settled", [0.0])
        faults.watch([settled_id]).settled(SETTLE_SECONDS, faults.report)
        tid = resender.send(settled_id)
        faults.wait_log(f"[{tid}] succeeded", f"redelivery {tid} of a settled job not run")
        faults.wait_log(
            f"job {settled_id} is settled, cancelled or gone: skipping delivery",
            "the guard did not skip the settled job",
        )
        settled = faults.jobs.rows([settled_id])[settled_id]

        # b) redelivered while running: both deliveries run, one settles.
        (running_id,) = faults.submit("guard-running", [3.0])
        watch = faults.watch([running_id])
        watch.running(1, RUNNING_SECONDS, faults.report)
        tid_running = resender.send(running_id)
        faults.watch([running_id]).settled(SETTLE_SECONDS, faults.report)
        faults.wait_log(f"[{tid_running}] succeeded", "the duplicate delivery did not finish")
        duplicate = faults.jobs.rows([running_id])[running_id]

        # c) cancel racing a redelivery of a running job, then one more redelivery.
        (cancel_id,) = faults.submit("guard-cancel", [4.0])
        faults.watch([cancel_id]).running(1, RUNNING_SECONDS, faults.report)
        barrier = threading.Barrier(2, timeout=LOG_SECONDS)
        answers: dict[str, Any] = {}

        def cancel():
            barrier.wait()
            answers["cancel"] = stack.post(f"/jobs/{cancel_id}/cancel", {})

        def redeliver():
            barrier.wait()
            answers["tid"] = resender.send(cancel_id)

        racers = [threading.Thread(target=cancel), threading.Thread(target=redeliver)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=LOG_SECONDS * 2)
        assert answers["cancel"].status_code == 200, faults.report(answers["cancel"].text)
        faults.wait_log(f"[{answers['tid']}] succeeded", "the racing redelivery did not finish")
        faults.wait_log(
            f"job {cancel_id} was cancelled while running", "the running job ignored the cancel"
        )
        raced = faults.jobs.rows([cancel_id])[cancel_id]
        tid_late = resender.send(cancel_id)
        faults.wait_log(f"[{tid_late}] succeeded", "the late redelivery did not finish")
        time.sleep(1)  # the original delivery notices the cancel within 0.5 s
        cancelled = faults.jobs.rows([cancel_id])[cancel_id]
    finally:
        resender.close()
    log = faults.worker_log()
    expected = {settled_id: "succeeded", running_id: "succeeded", cancel_id: "cancelled"}
    final = {settled_id: settled, running_id: duplicate, cancel_id: cancelled}
    faults.results.record(
        "6 early guard",
        jobs=len(final),
        completed=sum(row.status == "succeeded" for row in final.values()),
        lost=sum(final[i].status != status for i, status in expected.items()),
        started_twice=sum(row.attempts > 1 for row in final.values()),
        side_effects_twice=sum(row.side_effects > 1 for row in final.values()),
        note=f"settled then redelivered: attempts {settled.attempts}, side effects "
        f"{settled.side_effects}; redelivered while running: attempts {duplicate.attempts}, "
        f"side effects {duplicate.side_effects}; cancel raced by a redelivery (cancelled on "
        f"purpose): attempts {raced.attempts}, side effects {cancelled.side_effects}, "
        f"status {cancelled.status}",
    )
    # a) skipped: not claimed again, the side effect ran once.
    assert (settled.status, settled.attempts, settled.side_effects) == ("succeeded", 1, 1), (
        faults.report(str(settled))
    )
    # b) the second delivery claimed the job, ran, and found it settled by the first.
    assert (duplicate.status, duplicate.attempts, duplicate.side_effects) == (
        "succeeded",
        2,
        1,
    ), faults.report(str(duplicate))
    assert f"job {running_id} was settled by another delivery" in log, faults.report(
        "no delivery reported the job as settled by the other one"
    )
    # c) cancelled: no side effect, whichever of cancel and redelivery came first; the
    # redelivery after the cancel was skipped by the guard (no new claim).
    assert (cancelled.status, cancelled.side_effects) == ("cancelled", 0), faults.report(
        str(cancelled)
    )
    assert cancelled.attempts == raced.attempts, faults.report(f"{raced} then {cancelled}")
    assert log.count(f"job {cancel_id} is settled, cancelled or gone: skipping delivery") >= 1, (
        faults.report("the redelivery after the cancel was not skipped")
    )


# --- 7. head-of-line blocking -------------------------------------------------------------


def test_long_task_does_not_delay_short_ones(faults):
    """7. One child busy with a long job: each short job starts within 1 s of its creation."""
    faults.quiet()
    (long_id,) = faults.submit("hol-long", [HOL_LONG])
    faults.watch([long_id]).running(1, RUNNING_SECONDS, faults.report)
    waits, short_ids = [], []
    for index in range(HOL_SHORTS):
        (short_id,) = faults.submit(f"hol-short-{index}", [HOL_SHORT])
        short_ids.append(short_id)
        watch = faults.watch([short_id])
        row = watch.until(
            lambda rows, short_id=short_id: (
                rows[short_id] if rows[short_id].status in {"running", "succeeded"} else None
            ),
            timeout=RUNNING_SECONDS,
            what=f"short job {short_id} never started",
            report=faults.report,
            interval=0.05,
        )
        started = watch.claims.get((short_id, 1))
        if started is None:  # seen only once settled: its start is at most end - duration
            started = row.updated_at.timestamp() - HOL_SHORT
        waits.append(round(started - row.created_at.timestamp(), 3))
        watch.settled(SETTLE_SECONDS, faults.report)
    long_row = faults.jobs.rows([long_id])[long_id]
    ids = [long_id, *short_ids]
    rows = faults.watch(ids).settled(SETTLE_SECONDS, faults.report)
    faults.results.record(
        "7 long task + short tasks",
        **outcome(rows, ids),
        note=f"short jobs' start-to-created waits (s): {waits}; max {max(waits)} "
        f"while a {HOL_LONG:g} s job ran",
    )
    assert long_row.status == "running", faults.report(
        f"the long job was not running any more when the last short job ended: {long_row}"
    )
    assert max(waits) < HOL_MAX_WAIT, faults.report(f"a short job waited: {waits}")
    counts = outcome(rows, ids)
    assert counts["lost"] == 0 and counts["started_twice"] == 0, faults.report(str(counts))
