"""Store a job and send a task for it, the way POST /jobs does, from an operator's shell.

Run with the rendered service's interpreter and a worker's environment:

    python publish_job.py <package> <task name> <queue> <job name> <duration>

It creates the job with the service's own job store (`jobs.store.create_job`) inside the
worker app's Flask app context, with its task id chosen first as the API does, sends
`<task name>` with the job's id to `<queue>` through the worker app's send_task, and prints
`{"job_id": ..., "task_id": ...}`. The fault tier uses it for tasks the API cannot send (the
poison task) and for nothing else.
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid


def main(package: str, task_name: str, queue: str, name: str, duration: str) -> None:
    worker_app = importlib.import_module(f"{package}.worker").worker_app
    database = importlib.import_module(f"{package}.database")
    job_store = importlib.import_module(f"{package}.jobs.store")
    with worker_app.flask_app.app_context():
        session = database.get_session()
        task_id = f"publish-{uuid.uuid4()}"
        job = job_store.create_job(session, name, float(duration), task_id=task_id)
        worker_app.send_task(task_name, args=[job.id], task_id=task_id, queue=queue)
        print(json.dumps({"job_id": job.id, "task_id": task_id}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
