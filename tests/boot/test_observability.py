"""Tier 4, boot: what an operator sees of a booted variant (docs/observability.md).

One variant per broker is booted (module scope) with the service's own commands and
LOG_FORMAT=json. The tests parse every role's log as JSON and follow one POST /jobs from its
access line to the worker line that settled the job; scrape each role's metrics port; and
run a real Prometheus (Debian's, installed when missing) on loopback that scrapes them all
and is asked, through its HTTP API, for the jobs, a queue's depth, a failure and the latency.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from support.processes import wait_for
from support.prometheus import PrometheusServer, wait_value
from support.servers import HOST
from support.stack import Stack, prepare, send_task
from support.variants import SUPPORTED

# The defaults (Redis, PostgreSQL, beat, Flower) and the first RabbitMQ variant.
OBSERVED = [
    SUPPORTED[0],
    next(v for v in SUPPORTED if v.answers.get("broker") == "rabbitmq"),
]
pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.parametrize("variant", OBSERVED, ids=[v.id for v in OBSERVED], scope="module"),
]

JOB_SECONDS = 20
FIXED_FIELDS = ("timestamp", "level", "logger", "role", "pid", "message")


@pytest.fixture(scope="module")
def stack(variant, rendered, tmp_path_factory):
    """Boot the variant once with JSON logs; kill every process by PID after."""
    booted: Stack = prepare(variant.id, rendered(variant), tmp_path_factory.mktemp("observe"))
    booted.env_overrides = {"all": {"LOG_FORMAT": "json"}}
    try:
        booted.boot()
        yield booted
    finally:
        booted.close()


def json_lines(stack: Stack, role: str) -> list[dict[str, Any]]:
    """Return a role's log lines as JSON objects; fail on any line after the first that is not.

    Celery prints its start-up banner (not a log line) before the first one.
    """
    lines = stack.processes[role].log.read_text(errors="replace").splitlines()
    first = next((n for n, line in enumerate(lines) if line.startswith("{")), None)
    assert first is not None, stack.report(f"{role}: no JSON line")
    parsed = []
    for number, line in enumerate(lines[first:], start=first + 1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            message = f"{role} log line {number} is not JSON: {line!r}"
            raise AssertionError(stack.report(message)) from None
    return parsed


def test_every_role_logs_json_lines_with_the_fixed_fields(stack):
    """Web, each worker, beat and Flower: every log line is JSON with the fixed fields."""
    stack.get("/health/live")
    for role in stack.processes:
        for line in json_lines(stack, role):
            assert tuple(line)[: len(FIXED_FIELDS)] == FIXED_FIELDS, stack.report(f"{role}: {line}")
            expected_role = role.split("-")[0]
            assert line["role"] == expected_role, stack.report(f"{role}: {line}")
            assert line["timestamp"].endswith("+00:00"), stack.report(f"{role}: {line}")


def test_no_password_reaches_a_log(stack):
    """The broker's and database's passwords appear in no role's log."""
    for role, process in stack.processes.items():
        text = process.log.read_text(errors="replace")
        for name in ("BROKER_URL", "DATABASE_URL", "RESULT_BACKEND_URL"):
            password = urlsplit(process.env.get(name, "")).password
            if password:
                # As it would appear in a URL (the password may equal the user, as guest's).
                assert f":{password}@" not in text, stack.report(f"{role} logs the {name} password")
        if "FLOWER_BASIC_AUTH" in process.env:
            secret = process.env["FLOWER_BASIC_AUTH"].partition(":")[2]
            assert secret not in text, stack.report(f"{role} logs Flower's password")


def test_one_request_id_from_the_access_line_to_the_worker_line_that_settled_the_job(stack):
    """POST /jobs with X-Request-ID: the web's access line and the settling worker line carry it."""
    request_id = "boot-observability-1"
    created = stack.post(
        "/jobs", {"name": "observed", "duration": 0}, headers={"X-Request-ID": request_id}
    )
    assert created.status_code == 202, stack.report(created.text)
    assert created.headers["X-Request-ID"] == request_id
    job = created.json()
    worker = f"worker-{stack.job_queue}"
    message = f"job {job['id']} succeeded"

    def settled():
        return [line for line in json_lines(stack, worker) if line["message"] == message]

    (line,) = stack.wait(settled, timeout=JOB_SECONDS, what=f"no worker line '{message}'")
    assert line["request_id"] == request_id, stack.report(str(line))
    assert line["task_id"] == job["task_id"], stack.report(str(line))
    assert line["task_name"].endswith(".jobs.tasks.process_job"), stack.report(str(line))
    assert line["queue"] == stack.job_queue and line["delivery"] == 1, stack.report(str(line))

    def access():
        return [
            line
            for line in json_lines(stack, "web")
            if line["logger"] == "gunicorn.access" and line.get("request_id") == request_id
        ]

    (line,) = stack.wait(access, timeout=JOB_SECONDS, what="no access line with the request id")
    assert (line["http_method"], line["path"], line["status"]) == ("POST", "/jobs", 202), (
        stack.report(str(line))
    )


def test_flowers_metrics_ask_for_the_password(stack):
    """Flower's /metrics answers 401 without credentials, 200 with them; /healthcheck is open."""
    if "flower" not in stack.processes:
        return
    url = stack.flower_url + "/metrics"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401, stack.report(f"anonymous: {anonymous.status_code}")
    allowed = requests.get(url, auth=stack.flower_auth, timeout=10)
    assert allowed.status_code == 200, stack.report(f"/metrics with auth: {allowed.status_code}")
    assert requests.get(stack.flower_url + "/healthcheck", timeout=10).status_code == 200


def scrape(stack: Stack, role: str) -> str:
    """Return a role's metrics page (its own port, on loopback)."""
    response = requests.get(f"http://{HOST}:{stack.metrics_ports[role]}/metrics", timeout=10)
    assert response.status_code == 200, stack.report(f"{role} /metrics: {response.status_code}")
    return response.text


def test_every_role_serves_its_metrics_on_its_own_port(stack):
    """Web: requests by route; each worker: its tasks; the default worker: queues; no secret."""
    stack.post("/jobs", {"name": "measured", "duration": 0})
    web = scrape(stack, "web")
    assert 'http_requests_total{method="POST",route="/jobs",status="202"}' in web, stack.report(
        web[-2000:]
    )
    assert "http_request_duration_seconds_bucket" in web
    worker = f"worker-{stack.job_queue}"
    stack.wait(
        lambda: "celery_tasks_succeeded_total{" in scrape(stack, worker),
        timeout=JOB_SECONDS,
        what=f"{worker} counted no task",
    )
    default = scrape(stack, "worker-default")
    for family in ("celery_queue_length", "celery_queue_consumers", "celery_broker_up 1.0"):
        assert family in default, stack.report(f"worker-default lacks {family}")
    assert 'celery_queue_length{queue="celery"}' in default
    if "beat" in stack.processes:
        assert "celery_beat_last_tick_timestamp_seconds" in scrape(stack, "beat")
    for role in stack.metrics_ports:
        text = scrape(stack, role)
        assert "://" not in text and stack.token not in text, stack.report(f"{role} leaks")


# --- a real Prometheus scrapes the booted service ------------------------------------------

PROMETHEUS_SECONDS = 60
QUEUED_JOBS = 4
QUEUED_JOB_SECONDS = 1.5


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """Debian's Prometheus on loopback, scraping every role's metrics port each second, with
    the service's own alert rules loaded."""
    jobs: dict[str, list[str]] = {}
    for role, port in stack.metrics_ports.items():
        jobs.setdefault(role.split("-")[0], []).append(f"{HOST}:{port}")
    scrape_configs = [
        {"job_name": kind, "static_configs": [{"targets": targets, "labels": {"role": kind}}]}
        for kind, targets in jobs.items()
    ]
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"),
        scrape_configs,
        rule_files=[stack.project / "monitoring" / "alerts.yml"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_every_role_and_sees_jobs_queues_failures_and_latency(stack, prometheus):
    """Prometheus' HTTP API: jobs counted, a queue's depth back to 0, a failure, latency."""
    figures: dict[str, Any] = {}
    targets = wait_for(
        lambda: (
            (found := prometheus.targets())
            and all(t["health"] == "up" for t in found)
            and len(found) == len(stack.metrics_ports)
            and found
        ),
        timeout=PROMETHEUS_SECONDS,
        what="not every role's target is up",
        report=prometheus.describe_targets,
    )
    figures["targets up"] = sorted(t["labels"]["job"] for t in targets)
    posted = 'sum(http_requests_total{method="POST", route="/jobs", status="202"})'
    received = f'sum(celery_tasks_received_total{{task="{stack.package}.jobs.tasks.process_job"}})'
    before_posted = prometheus.value(posted) or 0.0
    before_received = prometheus.value(received) or 0.0
    for number in range(QUEUED_JOBS):
        created = stack.post("/jobs", {"name": f"scraped-{number}", "duration": QUEUED_JOB_SECONDS})
        assert created.status_code == 202, stack.report(created.text)
    figures["POST /jobs counted"] = wait_value(
        prometheus, posted, lambda v: v == before_posted + QUEUED_JOBS,
        timeout=PROMETHEUS_SECONDS, what="the submitted jobs are not counted",
    ) - before_posted  # fmt: skip
    depth = f'max(celery_queue_length{{queue="{stack.job_queue}"}})'
    peak = f'max(max_over_time(celery_queue_length{{queue="{stack.job_queue}"}}[1m]))'
    figures["job queue depth, peak"] = wait_value(
        prometheus, peak, lambda v: v >= 1,
        timeout=PROMETHEUS_SECONDS, what="the job queue never had a waiting message",
    )  # fmt: skip
    figures["job queue depth, after"] = wait_value(
        prometheus, depth, lambda v: v == 0,
        timeout=PROMETHEUS_SECONDS, what="the job queue's depth did not go back to 0",
    )  # fmt: skip
    figures["jobs received by the worker"] = wait_value(
        prometheus, received, lambda v: v >= before_received + QUEUED_JOBS,
        timeout=PROMETHEUS_SECONDS, what="the worker did not count the jobs",
    ) - before_received  # fmt: skip
    failed = f'sum(celery_tasks_failed_total{{task="{stack.package}.tasks.diagnostics.noop"}})'
    before_failed = prometheus.value(failed) or 0.0
    # The no-op task with an argument it does not take: its run raises TypeError.
    send_task(stack, f"{stack.package}.tasks.diagnostics.noop", ["unexpected"])
    figures["failed tasks counted"] = wait_value(
        prometheus, failed, lambda v: v == before_failed + 1,
        timeout=PROMETHEUS_SECONDS, what="the failed task is not counted",
    ) - before_failed  # fmt: skip
    buckets = prometheus.query('http_request_duration_seconds_bucket{route="/jobs"}')
    assert {b["metric"]["le"] for b in buckets} >= {"0.1", "1.0", "+Inf"}, buckets
    median = (
        # Over every request since the start: the cumulative buckets, no rate window.
        "histogram_quantile(0.5, sum by (le) "
        '(http_request_duration_seconds_bucket{method="POST", route="/jobs"}))'
    )
    figures["POST /jobs p50 seconds"] = wait_value(
        prometheus, median, lambda v: v > 0,
        timeout=PROMETHEUS_SECONDS, what="no latency quantile",
    )  # fmt: skip
    assert prometheus.value("max(celery_broker_up)") == 1
    figures["consumers of the job queue"] = prometheus.value(
        f'max(celery_queue_consumers{{queue="{stack.job_queue}"}})'
    )
    figures["alerts firing"] = sorted(
        a["labels"]["alertname"] for a in prometheus.alerts() if a["state"] == "firing"
    )
    print(f"\nPrometheus figures of {stack.variant_id}: {figures}")
    assert figures["consumers of the job queue"] >= 1
    assert figures["alerts firing"] == [], figures
