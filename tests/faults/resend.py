"""Re-send job tasks through the worker app's own send_task: a redelivery on demand.

Run with the rendered service's interpreter and a worker's environment:

    python resend.py <package> <task name>

It imports `<package>.worker` (the worker app, with its routes and broker), connects, prints
`ready`, then reads `<job id> <task id>` lines from stdin and publishes each as a new message
of the job task with that task id (the broker routes it to the job queue as any delivery),
printing `sent <task id>` after each. It exits at the end of stdin. Nothing here is part of the
service: it only plays the broker redelivering a message the service already handled.
"""

from __future__ import annotations

import importlib
import sys


def main(package: str, task_name: str) -> None:
    worker_app = importlib.import_module(f"{package}.worker").worker_app
    with worker_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job_id, task_id = line.split()
        worker_app.send_task(task_name, args=[int(job_id)], task_id=task_id)
        print(f"sent {task_id}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
