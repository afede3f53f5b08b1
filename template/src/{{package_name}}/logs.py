"""Logging for every role: one handler on the root logger, JSON or text, with context.

Every line carries a UTC ISO 8601 timestamp, the level, the logger, the role, the process id
and the message; inside a request its request id, inside a task the task's id, name, queue,
retries, delivery count and the request id that enqueued it. `LOG_FORMAT=json` (the image,
compose, Kubernetes) or `text` (local development). URLs lose their passwords on the way out.

Standard library plus python-json-logger only: gunicorn's config file and Flower import it.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("json", "text")
REQUEST_ID_HEADER = "X-Request-ID"
# The task message header that carries the request id into a worker (and on to the tasks
# that task enqueues).
REQUEST_ID_TASK_HEADER = "request_id"
# What a caller's X-Request-ID may be; anything else is replaced by a generated id.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# user:password@ in any URL (redis://:pw@host, amqp://user:pw@host/vhost, ...).
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]+@", re.IGNORECASE)
# Marks the handlers installed here, so configuring twice replaces them instead of doubling.
_SERVICE_HANDLER = "_service_handler"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_task_fields: ContextVar[dict[str, Any] | None] = ContextVar("task_fields", default=None)


def redact(text: str) -> str:
    """Return the text with the password of every URL in it replaced by '***'."""
    return _URL_PASSWORD.sub(r"\g<prefix>***@", text)


# --- context -------------------------------------------------------------------------------


def sane_request_id(candidate: str | None) -> str:
    """Return the caller's request id when it is sane, else a new random one."""
    if candidate and SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return secrets.token_hex(16)


def current_request_id() -> str | None:
    """Return the request id of the current request or task, if any."""
    fields = _task_fields.get()
    if fields and fields.get("request_id"):
        return fields["request_id"]
    return _request_id.get()


def bind_request_id(request_id: str | None) -> object:
    """Set the current request id; return the token that unbinds it."""
    return _request_id.set(request_id)


def unbind_request_id(token: object) -> None:
    """Restore the request id that was current before bind_request_id."""
    try:
        _request_id.reset(token)  # type: ignore[arg-type]
    except ValueError:  # bound in another context: forget it here all the same
        _request_id.set(None)


def bind_task(**fields: Any) -> None:
    """Add fields (task_id, task_name, queue, retries, delivery, request_id) to the task's lines."""
    _task_fields.set({**(_task_fields.get() or {}), **fields})


def unbind_task() -> None:
    """Forget the current task's fields (the task has ended)."""
    _task_fields.set(None)


class ContextFilter(logging.Filter):
    """Put the role, the request id and the task's fields on every record."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        fields = _task_fields.get()
        if fields:
            for key, value in fields.items():
                if value is not None:
                    setattr(record, key, value)
        request_id = _request_id.get()
        if request_id and not getattr(record, "request_id", None):
            record.request_id = request_id
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            _add_access_fields(record, record.args)
        _add_trace_fields(record)
        return True


def _add_trace_fields(record: logging.LogRecord) -> None:
    """With tracing on (tracing.py), the current span's trace and span ids, to find the trace."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # tracing is off: OpenTelemetry was never imported
        return
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        record.trace_id = format(context.trace_id, "032x")
        record.span_id = format(context.span_id, "016x")


def _add_access_fields(record: logging.LogRecord, atoms: dict) -> None:
    """Copy gunicorn's access-log atoms into fields of their own (the path, never the query)."""
    record.http_method = atoms.get("m")
    record.path = atoms.get("U")
    record.status = int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s")
    record.duration_ms = atoms.get("M")
    record.remote_addr = atoms.get("h")
    request_id = atoms.get("{x-request-id}o")
    if request_id and request_id != "-":
        record.request_id = request_id


# --- formatters ----------------------------------------------------------------------------

# The fields every line has, in this order, and the record attributes they come from.
JSON_FIELDS = {"levelname": "level", "name": "logger", "process": "pid"}
# Record attributes no JSON line carries: the standard ones, and `data`, the context dict
# Celery attaches to its task lines (received, succeeded, failed). Its id and name are in the
# message already; its args, kwargs and return value are the caller's data, which the text
# format never prints either, and serialising them on every task line is the costliest part
# of a line in the worker's main process (docs/observability.md).
SKIPPED_ATTRIBUTES = (*RESERVED_ATTRS, "data")
# Context fields the text format appends, in this order, when a line has them.
CONTEXT_FIELDS = ("request_id", "task_id", "task_name", "queue", "retries", "delivery", "trace_id")


class ServiceJsonFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, role, pid, message, then context."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(role)s %(process)d %(message)s",
            rename_fields=JSON_FIELDS,
            reserved_attrs=SKIPPED_ATTRIBUTES,
            timestamp=True,
        )

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        for key in ("message", "exc_info", "stack_info"):
            if isinstance(log_record.get(key), str):
                log_record[key] = redact(log_record[key])
        return log_record

    def jsonify_log_record(self, log_record: dict[str, Any]) -> str:
        # Timestamp first, then the fixed fields: easier to read in a terminal.
        ordered = {"timestamp": log_record.pop("timestamp", None), **log_record}
        return super().jsonify_log_record(ordered)


class ServiceTextFormatter(logging.Formatter):
    """Readable lines for a terminal: time, level, role[pid], logger, message, context."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(role)s[%(process)d] %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Return the record's time in UTC, ISO 8601 with milliseconds."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{key}={getattr(record, key)}"
            for key in CONTEXT_FIELDS
            if getattr(record, key, None) is not None
        ]
        return redact(f"{line} [{' '.join(context)}]" if context else line)


def formatter(log_format: str) -> logging.Formatter:
    """Return the formatter of a LOG_FORMAT value ('json' or 'text')."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT={log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    return ServiceJsonFormatter() if log_format == "json" else ServiceTextFormatter()


def service_handler(role: str, log_format: str, stream=None) -> logging.Handler:
    """Return a stream handler (stderr by default) with the service's formatter and context."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextFilter(role))
    setattr(handler, _SERVICE_HANDLER, True)
    return handler


def configure(role: str, level: str = "INFO", log_format: str = "text", stream=None) -> None:
    """Give the root logger the service's handler (replacing one installed before)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _SERVICE_HANDLER, False)]:
        root.removeHandler(old)
    root.addHandler(service_handler(role, log_format, stream))
    root.setLevel(level)


def gunicorn_config(level: str, log_format: str) -> dict[str, Any]:
    """Return gunicorn's `logconfig_dict`: its error and access logs through the same handler."""
    handler = {"()": service_handler, "role": "web", "log_format": log_format}
    own = {"level": level, "handlers": ["service"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {"service": handler},
        "root": {"level": level, "handlers": ["service"]},
        "loggers": {"gunicorn.error": own, "gunicorn.access": {**own, "level": "INFO"}},
    }


# --- the web: a request id on every request ------------------------------------------------


def init_app(app) -> None:
    """Give every request an id (the caller's X-Request-ID when sane) and return it."""
    from flask import g, request

    @app.before_request
    def bind() -> None:
        g.request_id = sane_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = bind_request_id(g.request_id)

    @app.after_request
    def answer(response):
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response

    @app.teardown_request
    def unbind(_error: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            unbind_request_id(token)
