"""The task base class: runs in the Flask app context, guards redeliveries, and refuses to
publish through any app but the process's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.utils.time import get_exponential_backoff_interval

_process_app: Celery | None = None


class PhantomAppError(RuntimeError):
    """A task was about to be published through an app that is not the process's app."""


class CountdownTooLongError(ValueError):
    """A countdown or ETA is further away than the broker can hold a message safely."""


def bind_process_app(app: Celery) -> None:
    """Make `app` the one Celery app of this process, for every thread."""
    global _process_app
    # set_default(), not only set_current(): request threads start without a current app
    # and would otherwise fall back to Celery's phantom app (amqp://localhost, queue celery).
    app.set_default()
    _process_app = app


def ensure_process_app(app: Celery) -> None:
    """Raise PhantomAppError unless `app` is the process's configured Celery app."""
    if app is _process_app and app.main != "default":
        return
    reason = (
        "no service Celery app was created in this process"
        if _process_app is None
        else f"it is bound to app {app.main!r} (id {id(app)}), not the process's app "
        f"{_process_app.main!r} (id {id(_process_app)})"
    )
    raise PhantomAppError(
        f"Refusing to publish: {reason}. Import the role module first "
        "(web, worker or beat) or create the app with create_app() before sending tasks "
        "(README: Rules this service keeps)."
    )


def _seconds_ahead(options: dict[str, Any]) -> float:
    if options.get("countdown") is not None:
        return float(options["countdown"])
    eta = options.get("eta")
    if eta is None:
        return 0.0
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    return (eta - datetime.now(UTC)).total_seconds()


class ServiceTask(Task):
    """Run inside the Flask app context and publish only through the process's app."""

    # Celery's own defaults (celery.app.autoretry), declared so the guard's retry reads the
    # same policy; a task's decorator options (autoretry_for=..., retry_backoff=...) override them.
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_backoff: bool | int = False
    retry_backoff_max = 600
    retry_jitter = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flask_app = getattr(self.app, "flask_app", None)
        if flask_app is None:
            return self.run(*args, **kwargs)
        with flask_app.app_context():
            try:
                if not self.should_run(*args, **kwargs):
                    return None
            except self.autoretry_for as error:
                # The guard failed the way the body may fail (e.g. the database is down):
                # retry with the task's own policy, the one autoretry_for applies to run().
                raise self.retry(exc=error, countdown=self.retry_countdown()) from error
            return self.run(*args, **kwargs)

    def should_run(self, *args: Any, **kwargs: Any) -> bool:
        """Return False to skip this delivery before any work (the at-least-once guard)."""
        return True

    def retry_countdown(self) -> int:
        """Return the next retry's delay under the task's retry options, as autoretry does."""
        if not self.retry_backoff:
            return self.default_retry_delay
        return get_exponential_backoff_interval(
            factor=int(max(1.0, float(self.retry_backoff))),
            retries=self.request.retries,
            maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter,
        )

    def apply_async(
        self,
        args=None,
        kwargs=None,
        task_id=None,
        producer=None,
        link=None,
        link_error=None,
        shadow=None,
        **options,
    ):
        """Publish the task after checking its app binding and countdown."""
        ensure_process_app(self.app)
        longest = getattr(self.app, "max_countdown", None)
        if longest is not None and _seconds_ahead(options) > longest:
            raise CountdownTooLongError(
                f"{self.name}: a countdown/ETA over {longest} s would outlive the broker's "
                "visibility timeout and run twice; schedule it with beat instead."
            )
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, **options
        )

    def retry(self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None,
              max_retries=None, **options):  # fmt: skip
        """Retry later, but never further away than the longest countdown accepted."""
        longest = getattr(self.app, "max_countdown", None)
        if longest is not None and eta is None:
            delay = self.default_retry_delay if countdown is None else countdown
            countdown = min(delay, longest)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
