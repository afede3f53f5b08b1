"""Celery's prefork pool, kept alive when the broker reconnects just as a child exits.

When the broker connection drops, `worker_cancel_long_running_tasks_on_connection_loss`
terminates the children running late-acked tasks, and the consumer's restart registers every
pool process with the event loop again. A child that has just exited is still in the pool's
list but already untracked (its sentinel descriptor is None); Celery then registers None, kombu
5.7 raises ValueError('file descriptor is None'), which Celery 5.7's
`iterate_file_descriptors_safely` does not catch, and the worker's main process exits
(celery/celery#9250 again). Skipping such a child is what Celery means to do: the pool's own
maintenance replaces it. The profile selects this class with `worker_pool`.
"""

from __future__ import annotations

import logging

from celery.concurrency import asynpool, prefork

logger = logging.getLogger(__name__)


class AsynPool(asynpool.AsynPool):
    """Celery's asynchronous pool that does not watch a child it has already let go."""

    def _track_child_process(self, proc, hub):
        """Watch the child's exit, unless the pool untracked it (it exited meanwhile)."""
        if hasattr(proc, "_sentinel_poll") and proc._sentinel_poll is None:
            logger.info("child %s exited during a reconnect: the pool replaces it", proc.pid)
            return
        super()._track_child_process(proc, hub)


class TaskPool(prefork.TaskPool):
    """Celery's prefork pool with the asynchronous pool above."""

    Pool = AsynPool
