"""A task whose every delivery kills its own worker child: a crash loop, on purpose.

Not part of the service. The fault tier copies this file into its throw-away project as
`<package>/tasks/poison.py` (and lists it in TASK_MODULES) before boot, so the worker imports
it like any task module. It stands for a task that segfaults or is OOM-killed on every run:
late acks and task_reject_on_worker_lost requeue it each time, and only the service's own
delivery count (ServiceTask) ends the loop.
"""

from __future__ import annotations

import logging
import os
import signal

from celery import shared_task

from ..jobs.tasks import JobTask

logger = logging.getLogger(__name__)


@shared_task(base=JobTask, bind=True)
def kill_own_child(self, job_id: int) -> None:
    """Run after JobTask's guard claimed the job (attempts + 1), then SIGKILL this child."""
    logger.warning("job %s: poison delivery, killing child %s", job_id, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
