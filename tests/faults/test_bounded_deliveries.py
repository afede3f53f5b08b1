"""Fault 8: a task that SIGKILLs its own worker child on every delivery ends dead-lettered.

The poison task (poison_task.py, in the booted project as <package>.tasks.poison) claims its
job with the job task's guard, then kills its child. Late acks and task_reject_on_worker_lost
requeue it every time; only the service's own count (ServiceTask, MAX_DELIVERIES) ends the
loop: the delivery after the limit is dead-lettered instead of run, the job is failed with the
reason, and the worker, which lost a child per delivery, keeps settling other jobs.
"""

from __future__ import annotations

import time

import pytest

from .observe import outcome

pytestmark = pytest.mark.timeout(300)

# Every delivery costs a child: the worker notices, requeues and forks a new one. Bound of the
# whole loop on a loaded machine (measured: a few seconds).
DEAD_LETTER_SECONDS = 90
# Ordinary jobs submitted while the poison loops; each settles within this bound.
ORDINARY = 4
ORDINARY_DURATION = 0.5
SETTLE_SECONDS = 60


def test_crash_looping_task_is_dead_lettered_after_max_deliveries(faults):
    """8. Killing its child on every delivery: at most MAX_DELIVERIES runs, then dead-lettered."""
    faults.quiet()
    worker = faults.worker
    limit = faults.profile["max_deliveries"]
    main_pid = worker.pid
    log_offset = len(faults.worker_log())
    sent_at = time.time()
    poison = faults.publish_job(faults.poison_task, "poison-crash-loop")
    ordinary = faults.submit("poison-meanwhile", [ORDINARY_DURATION] * ORDINARY)
    job_id, task_id = poison["job_id"], poison["task_id"]
    watch = faults.watch([job_id, *ordinary])
    rows = watch.settled(DEAD_LETTER_SECONDS, faults.report)
    failed = rows[job_id]
    seconds_to_failed = round(failed.updated_at.timestamp() - sent_at, 1)
    first_run = watch.claims.get((job_id, 1))
    after_first_run = round(failed.updated_at.timestamp() - first_run, 1) if first_run else None
    everyone = faults.watch(ordinary).settled(SETTLE_SECONDS, faults.report)
    letters = faults.operation("dead-letters", "list")
    entries = [entry for entry in letters if entry["task_id"] == task_id]
    log = faults.worker_log()[log_offset:]
    kills = log.count(f"job {job_id}: poison delivery")
    counts = outcome(everyone, ordinary)
    faults.results.record(
        "8 crash loop, dead-lettered",
        jobs=1 + len(ordinary),
        completed=counts["completed"],
        lost=counts["lost"] + (failed.status != "failed"),
        started_twice=counts["started_twice"],
        side_effects_twice=counts["side_effects_twice"],
        recovery_seconds=seconds_to_failed,
        deliveries_before_dead_letter=failed.attempts,
        note=f"poison job: {failed.status} after {failed.attempts} runs (MAX_DELIVERIES "
        f"{limit}), dead letter counted {entries[0]['deliveries'] if entries else None} "
        f"deliveries; failed {seconds_to_failed} s after the publish, {after_first_run} s after "
        f"the first run; {counts['completed']}/"
        f"{len(ordinary)} ordinary jobs settled meanwhile by the same worker (pid {main_pid})",
    )
    # The body ran at most MAX_DELIVERIES times (each run claimed the job once) ...
    assert 1 <= failed.attempts <= limit, faults.report(f"poison job {failed}")
    assert kills == failed.attempts, faults.report(f"{kills} kills logged, {failed}")
    # ... and the delivery after the limit did not run it: the job failed with the reason.
    assert failed.status == "failed", faults.report(f"poison job {failed}")
    assert (failed.error or "").startswith("dead-lettered"), faults.report(str(failed))
    assert f"[{task_id}] dead-lettered: delivered {limit + 1} times" in log, faults.report(
        "the worker did not log the dead letter"
    )
    # The operator sees it: `operations dead-letters list` (the worker's environment).
    assert len(entries) == 1, faults.report(f"dead letters: {letters}")
    (entry,) = entries
    assert entry["args"] == [job_id] and entry["task"] == faults.poison_task, str(entry)
    assert entry["reason"].startswith("dead-lettered") and entry["deliveries"] == limit + 1, str(
        entry
    )
    # The same worker (its main process never died) settled the other jobs meanwhile.
    assert worker.alive() and worker.pid == main_pid, faults.report("the worker died")
    assert counts["lost"] == 0 and counts["completed"] == len(ordinary), faults.report(str(counts))
    assert counts["started_twice"] == 0 and counts["side_effects_twice"] == 0, faults.report(
        str(counts)
    )
