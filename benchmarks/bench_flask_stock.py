"""STOCK HTTP: a Flask + Celery app written the way the Flask docs' Celery example does it.

The pattern a user writes without the template (flask.palletsprojects.com, "Background Tasks
with Celery"): `celery_init_app()` with a `FlaskTask` that pushes an app context, the Celery
config as one mapping in `app.config["CELERY"]`, `set_default()`, `@shared_task` and
`.delay()`. Around it, the same table and insert as the generated service (its `Job` model),
on the same PostgreSQL, with a scoped SQLAlchemy session: one commit, then `.delay()`.

    gunicorn -w 2 -k gthread --threads 4 bench_flask_stock:app      # the web
    celery -A bench_flask_stock:celery_app worker -c 2                # the worker

Environment: BENCH_DATABASE_URL, BENCH_BROKER_URL, BENCH_RESULT_URL, BENCH_PACKAGE.
"""

from __future__ import annotations

import importlib
import os

from celery import Celery, Task, shared_task
from flask import Flask, request
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker

_models = importlib.import_module(
    f"{os.environ.get('BENCH_PACKAGE', 'example_service')}.jobs.models"
)
Job, JobStatus = _models.Job, _models.JobStatus

engine = create_engine(os.environ["BENCH_DATABASE_URL"])
Session = scoped_session(sessionmaker(engine, expire_on_commit=False))


def celery_init_app(app: Flask) -> Celery:
    """The Flask docs' function, verbatim in substance."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        CELERY={
            "broker_url": os.environ["BENCH_BROKER_URL"],
            "result_backend": os.environ.get("BENCH_RESULT_URL") or None,
            "task_ignore_result": True,
        },
    )
    celery_init_app(app)

    @app.teardown_appcontext
    def remove_session(_exception: BaseException | None) -> None:
        Session.remove()

    @app.post("/jobs")
    def create_job():
        body = request.get_json()
        job = Job(name=body["name"], duration=float(body.get("duration", 0)))
        Session.add(job)
        Session.commit()
        process_job.delay(job.id)
        return job.to_dict(), 202

    @app.get("/jobs/<int:job_id>")
    def read_job(job_id: int):
        job = Session.get(Job, job_id)
        return (job.to_dict(), 200) if job else ({"error": "not found"}, 404)

    return app


@shared_task
def process_job(job_id: int) -> None:
    """Settle the job: the side effect counted once per execution."""
    job = Session.get(Job, job_id)
    if job is None:
        return
    job.status = JobStatus.SUCCEEDED
    job.attempts += 1
    job.side_effects += 1
    Session.commit()


app = create_app()
celery_app = app.extensions["celery"]
