"""Tier 4, boot: tracing and error reports, opt-in, on real processes (docs/observability.md).

The defaults variant is booted once with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP
receiver the test starts on loopback (tests/support/sinks.py, run with the service's own
interpreter) and SENTRY_DSN at a fake Sentry ingest in the test process.
"""

from __future__ import annotations

import json

import pytest
from support.servers import free_port
from support.sinks import OtlpSink, SentrySink
from support.stack import Stack, prepare, send_task
from support.variants import SUPPORTED

TRACED = SUPPORTED[0]
pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.parametrize("variant", [TRACED], ids=[TRACED.id], scope="module"),
]
SPANS_SECONDS = 30


@pytest.fixture(scope="module")
def sinks(tmp_path_factory):
    """The fake Sentry now; the OTLP receiver once the service's interpreter exists."""
    sentry = SentrySink()
    sentry.start()
    try:
        yield sentry
    finally:
        sentry.stop()


@pytest.fixture(scope="module")
def traced(variant, rendered, sinks, tmp_path_factory):
    """Boot the variant with tracing and Sentry on; return (stack, OTLP sink, Sentry sink)."""
    folder = tmp_path_factory.mktemp("traced")
    booted: Stack = prepare(variant.id, rendered(variant), folder)
    otlp = OtlpSink(str(booted.project / ".venv" / "bin" / "python"), folder, free_port())
    booted.env_overrides = {
        "all": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            # Export within a fraction of a second (the default waits 5 s).
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "SENTRY_DSN": sinks.dsn,
            "LOG_FORMAT": "json",
        }
    }
    try:
        otlp.start()
        booted.boot()
        yield booted, otlp, sinks
    finally:
        booted.close()
        otlp.stop()


def test_one_trace_holds_the_request_the_publish_and_the_worker_run(traced):
    """POST /jobs: its server span, the publish span and the worker's task span share a trace."""
    stack, otlp, _sentry = traced
    created = stack.post("/jobs", {"name": "traced", "duration": 0})
    assert created.status_code == 202, stack.report(created.text)
    task = f"{stack.package}.jobs.tasks.process_job"

    def trace():
        spans = otlp.spans()
        requests = [s for s in spans if s["name"] == "POST /jobs"]
        for request in requests:
            same = [s for s in spans if s["trace_id"] == request["trace_id"]]
            names = {s["name"] for s in same}
            if {f"apply_async/{task}", f"run/{task}"} <= names:
                return request, same
        return None

    request, spans = stack.wait(trace, timeout=SPANS_SECONDS, what="no complete trace")
    by_name = {span["name"]: span for span in spans}
    publish, run = by_name[f"apply_async/{task}"], by_name[f"run/{task}"]
    assert publish["parent_span_id"] == request["span_id"], stack.report(str(spans))
    assert run["parent_span_id"] == publish["span_id"], stack.report(str(spans))
    assert request["service"] == f"{stack.answers['project_slug']}-web"
    assert run["service"] == f"{stack.answers['project_slug']}-worker"
    # The worker's queries are in the trace too (SQLAlchemy), under the task's run.
    assert any(s["parent_span_id"] == run["span_id"] for s in spans), stack.report(str(spans))
    # The worker's log line that settled the job names the trace: logs lead to the trace.
    message = f"job {created.json()['id']} succeeded"
    log = stack.processes[f"worker-{stack.job_queue}"].log.read_text(errors="replace")
    (line,) = [json.loads(text) for text in log.splitlines() if message in text]
    assert line["trace_id"] == request["trace_id"], stack.report(str(line))
    assert line["span_id"] == run["span_id"], stack.report(str(line))
    print(f"\ntrace {request['trace_id']}: {sorted(by_name)}")


def test_the_failure_of_a_task_reaches_sentry(traced):
    """A task that raises: the fake Sentry ingest receives its event, with the task's name."""
    stack, _otlp, sentry = traced
    task = f"{stack.package}.tasks.diagnostics.noop"
    send_task(stack, task, ["unexpected"])

    def reported():
        return [
            event
            for event in sentry.events
            if "TypeError" in json.dumps(event.get("exception", {})) and task in json.dumps(event)
        ]

    events = stack.wait(reported, timeout=SPANS_SECONDS, what="Sentry got no event of the task")
    event = events[0]
    assert event["tags"]["role"] == "worker", stack.report(str(event))
    assert event["server_name"] == f"{stack.answers['project_slug']}-worker"
