"""Tier 4, boot: each supported variant's real processes against real servers on 127.0.0.1.

One boot per variant (the module-scoped `stack` fixture): install the rendered project, start
its servers, run migrate, start web, one worker per queue, beat and Flower with exactly the
argv `python -m <pkg>.entrypoints` prints. Each test below checks one point, in this order;
the last one stops everything with SIGTERM. Every failure message ends with the tail of every
process's log. docs/boot.md says what this proves and what it needs.
"""

from __future__ import annotations

import time

import pytest
import requests
from support.params import supported_params
from support.stack import Stack, prepare, probe

SUPPORTED = supported_params()
pytestmark = [
    pytest.mark.timeout(600),
    # Module scope: every test of a variant shares one boot of it.
    pytest.mark.parametrize(*SUPPORTED.args, **SUPPORTED.kwargs, scope="module"),
]

ROUNDTRIP_SECONDS = 10
JOB_SECONDS = 20
BEAT_SECONDS = 30
FLOWER_SECONDS = 20
OUTAGE_DETECT_SECONDS = 30
RECOVERY_SECONDS = 60
DRAIN_SECONDS = 15
OUTAGE_HTTP_TIMEOUT = 60


@pytest.fixture(scope="module")
def stack(variant, rendered, tmp_path_factory):
    """Boot the whole variant once; kill every process by PID and drop its servers after."""
    booted: Stack = prepare(variant.id, rendered(variant), tmp_path_factory.mktemp("boot"))
    try:
        booted.boot()
        yield booted
    finally:
        booted.close()
        print(f"\nboot timings of {variant.id}: {booted.timings}")


def job_ids(stack: Stack) -> set[int]:
    response = stack.get("/jobs", params={"limit": 100})
    assert response.status_code == 200, stack.report(f"GET /jobs: {response.status_code}")
    return {job["id"] for job in response.json()["jobs"]}


def wait_job_succeeded(stack: Stack, job_id: int, timeout: float) -> dict:
    def settled():
        job = stack.get(f"/jobs/{job_id}").json()
        return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

    job = stack.wait(settled, timeout=timeout, what=f"job {job_id} was not settled")
    assert job["status"] == "succeeded", stack.report(f"job {job_id} settled as {job}")
    return job


def test_web_is_live_and_ready(stack):
    """1. /health/live and /health/ready answer 200 with every check ok."""
    live = stack.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok"}, stack.report(live.text)
    ready = stack.get("/health/ready")
    assert ready.status_code == 200, stack.report(f"/health/ready: {ready.text}")
    body = ready.json()
    assert body["status"] == "ok", stack.report(str(body))
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"], stack.report(
        str(body)
    )


def test_celery_diagnostics_show_one_app_and_consumed_routes(stack):
    """1. One Celery app in the request thread; every route goes to a declared, consumed queue."""
    assert stack.get("/health/celery").status_code == 401, stack.report("no token was accepted")
    report = stack.diagnostics()
    app = report["app"]
    assert app["task_app_id"] == app["celery_app_id"] == app["current_app_id"], stack.report(
        f"more than one Celery app: {app}"
    )
    assert app["consistent"] is True, stack.report(str(app))
    declared = {queue["name"] for queue in report["queues"]}
    consumed = {queue for queues in report["workers"].values() for queue in queues}
    assert set(stack.worker_queues) == declared, stack.report(
        f"workers started for {stack.worker_queues}, queues declared {sorted(declared)}"
    )
    assert report["routes"], stack.report("no route reported")
    for task, queue in report["routes"].items():
        assert queue in declared, stack.report(f"{task} routes to undeclared queue {queue}")
        assert queue in consumed, stack.report(f"{task} routes to {queue}, no worker consumes it")
    assert "password" not in str(report) and ":guest@" not in str(report), stack.report(
        "an URL in the report is not redacted"
    )


def test_roundtrip_reaches_every_queue(stack):
    """2. The no-op task sent to each queue is run by that queue's worker and returns SUCCESS."""
    workers = stack.diagnostics()["workers"]
    for queue in stack.worker_queues:
        started = stack.post("/health/celery/roundtrip", {"queue": queue}, auth=True)
        assert started.status_code == 202, stack.report(f"roundtrip {queue}: {started.text}")
        task_id = started.json()["task_id"]
        assert started.json()["queue"] == queue, stack.report(started.text)

        def done(task_id=task_id):
            body = stack.get(f"/health/celery/roundtrip/{task_id}", auth=True).json()
            return body if body["state"] in {"SUCCESS", "FAILURE"} else None

        body = stack.wait(
            done, timeout=ROUNDTRIP_SECONDS, what=f"roundtrip on {queue} did not finish"
        )
        assert body["state"] == "SUCCESS", stack.report(f"roundtrip on {queue}: {body}")
        result = body["result"]
        assert result["routing_key"] == queue, stack.report(f"roundtrip on {queue}: {result}")
        assert queue in workers.get(result["hostname"], []), stack.report(
            f"{result['hostname']} ran the {queue} roundtrip but consumes "
            f"{workers.get(result['hostname'])}"
        )


def test_job_is_settled_by_the_job_queue_worker(stack):
    """3. POST /jobs → 202; a worker settles it: succeeded, result.queue == the job queue."""
    created = stack.post("/jobs", {"name": "boot-job", "duration": 0.2})
    assert created.status_code == 202, stack.report(f"POST /jobs: {created.text}")
    job = wait_job_succeeded(stack, created.json()["id"], JOB_SECONDS)
    assert job["result"]["queue"] == stack.job_queue, stack.report(f"job: {job}")
    assert job["result"]["processed_by"].startswith(f"{stack.job_queue}@"), stack.report(str(job))


def test_every_declared_queue_is_consumed(stack):
    """4. Each declared queue is consumed by a worker (as the workers themselves report)."""
    report = stack.diagnostics()
    for queue in report["queues"]:
        assert queue["consumed"] is True, stack.report(f"queue {queue} has no consumer")
        assert queue["exchange"] == queue["routing_key"] == queue["name"], stack.report(
            f"queue {queue} is not direct-routed on its own exchange and key"
        )
    for queue in stack.worker_queues:
        node = [name for name, queues in report["workers"].items() if queues == [queue]]
        assert node, stack.report(f"no worker consumes exactly [{queue}]: {report['workers']}")


def test_beat_heartbeat_reaches_a_worker(stack):
    """5. Beat sends its heartbeat task and a worker records it (beat.count >= 1)."""
    if "beat" not in stack.commands:
        # use_beat=false: no beat role, no beat probe, no periodic task, nothing to report.
        assert "beat" not in stack.processes and "beat_probe" not in stack.commands
        report = stack.diagnostics()
        assert "beat" not in report, stack.report(f"beat reported without beat: {report}")
        assert not [task for task in report["routes"] if "beat" in task], stack.report(
            f"a beat task is routed without beat: {report['routes']}"
        )
        return
    beat = stack.wait(
        lambda: (report := stack.diagnostics()["beat"])["count"] >= 1 and report,
        timeout=BEAT_SECONDS,
        what="no beat heartbeat was recorded by a worker",
    )
    assert beat["age_seconds"] is not None and beat["age_seconds"] < BEAT_SECONDS, stack.report(
        str(beat)
    )


def test_flower_requires_auth_and_lists_the_workers(stack):
    """6. Flower: /api/workers 401 without or with wrong credentials, 200 with them."""
    if "flower" not in stack.commands:
        # use_flower=false: no Flower role at all.
        assert "flower" not in stack.processes and "flower" not in stack.commands["ports"]
        return
    assert "DATABASE_URL" not in stack.role_env("flower")
    assert "SECRET_KEY" not in stack.role_env("flower")
    api = stack.flower_url + "/api/workers"
    health = requests.get(stack.flower_url + "/healthcheck", timeout=5)
    assert health.status_code == 200, stack.report(f"Flower /healthcheck: {health.status_code}")
    anonymous = requests.get(api, timeout=10)
    assert anonymous.status_code == 401, stack.report(f"anonymous: {anonymous.status_code}")
    wrong = requests.get(api, auth=("admin", "wrong"), timeout=10)
    assert wrong.status_code == 401, stack.report(f"wrong password: {wrong.status_code}")
    nodes = set(stack.diagnostics()["workers"])

    def listed():
        response = requests.get(api, auth=stack.flower_auth, params={"refresh": "true"}, timeout=10)
        assert response.status_code == 200, f"{response.status_code} {response.text[:200]}"
        return nodes <= set(response.json()) and response.json()

    stack.wait(listed, timeout=FLOWER_SECONDS, what=f"Flower does not list {sorted(nodes)}")


def test_probes_pass_while_healthy(stack):
    """7. Every worker's and beat's probe exits 0; a missing heartbeat file exits 1."""
    for name, worker in stack.workers().items():
        env = {**stack.base_env, "WORKER_HEARTBEAT_FILE": worker.env["WORKER_HEARTBEAT_FILE"]}
        completed = probe(stack, "worker", env)
        assert completed.returncode == 0, stack.report(
            f"{name} probe: {completed.returncode} {completed.stdout}{completed.stderr}"
        )
    missing = {**stack.base_env, "WORKER_HEARTBEAT_FILE": str(stack.folder / "nobody.heartbeat")}
    assert probe(stack, "worker", missing).returncode == 1, stack.report("probe of no file")
    if "beat" in stack.processes:
        env = {
            **stack.base_env,
            "BEAT_HEARTBEAT_FILE": stack.role_env("beat")["BEAT_HEARTBEAT_FILE"],
        }
        completed = stack.wait(
            lambda: (done := probe(stack, "beat", env)).returncode == 0 and done,
            timeout=BEAT_SECONDS,
            what="beat probe never passed",
        )
        assert "beat: heartbeat" in completed.stdout
    assert stack.get("/health/live").status_code == 200, stack.report("web live")
    assert stack.get("/health/ready").status_code == 200, stack.report("web ready")
    if "flower" in stack.processes:
        flower = requests.get(stack.flower_url + "/healthcheck", timeout=5)
        assert flower.status_code == 200, stack.report("flower /healthcheck")


def test_broker_outage_gives_503_and_recovers_without_restarts(stack):
    """8. Broker down: ready 503, POST /jobs 503 and nothing stored; back up: a job round-trips."""
    pids = {name: process.pid for name, process in stack.processes.items()}
    before = job_ids(stack)
    outage_started = time.monotonic()
    stack.broker.outage()
    try:
        ready = stack.wait(
            lambda: (response := stack.get("/health/ready")).status_code == 503 and response.json(),
            timeout=OUTAGE_DETECT_SECONDS,
            what="/health/ready stayed 200 with the broker down",
        )
        checks = ready["checks"]
        assert checks["broker"]["ok"] is False, stack.report(str(checks))
        assert checks["database"]["ok"] is True, stack.report(str(checks))
        created = stack.post(
            "/jobs", {"name": "during-outage", "duration": 0}, timeout=OUTAGE_HTTP_TIMEOUT
        )
        assert created.status_code == 503, stack.report(
            f"POST /jobs with the broker down: {created.status_code} {created.text}"
        )
        assert job_ids(stack) == before, stack.report("a job was stored although not queued")
        roundtrip = stack.post(
            "/health/celery/roundtrip", {}, auth=True, timeout=OUTAGE_HTTP_TIMEOUT
        )
        assert roundtrip.status_code == 503, stack.report(
            f"roundtrip with the broker down: {roundtrip.status_code} {roundtrip.text}"
        )
    finally:
        outage_seconds = round(time.monotonic() - outage_started, 1)
        stack.broker.restore()
    stack.timings["broker outage"] = outage_seconds
    restored = time.monotonic()
    stack.wait(
        lambda: stack.get("/health/ready").status_code == 200,
        timeout=RECOVERY_SECONDS,
        what="/health/ready did not recover after the broker came back",
    )
    created = stack.post("/jobs", {"name": "after-outage", "duration": 0})
    assert created.status_code == 202, stack.report(f"POST /jobs after recovery: {created.text}")
    job = wait_job_succeeded(stack, created.json()["id"], RECOVERY_SECONDS)
    assert job["result"]["queue"] == stack.job_queue, stack.report(str(job))
    stack.timings["recovery"] = round(time.monotonic() - restored, 1)
    after = {name: process.pid for name, process in stack.processes.items()}
    assert after == pids and not stack.dead(), stack.report("a role was restarted or died")


def test_no_message_is_left_in_any_queue(stack):
    """4. After the run every declared queue and the orphan `celery` queue are empty."""

    def empty():
        report = stack.diagnostics()
        depths = {queue["name"]: queue["depth"] for queue in report["queues"]}
        depths["celery (orphan)"] = report["orphan_queue"]["depth"]
        return depths if all(depth == 0 for depth in depths.values()) else None

    stack.wait(empty, timeout=DRAIN_SECONDS, what="messages remain in a queue")


def test_sigterm_stops_every_process_within_its_grace_period(stack):
    """9. SIGTERM to each role: it exits within its grace period and leaves no process."""
    assert not stack.dead(), stack.report("a role died before the shutdown test")
    for process in stack.processes.values():
        process.remember_tree()
    started = time.monotonic()
    for process in stack.processes.values():
        process.terminate()
    late = [p.name for p in stack.processes.values() if not p.wait_exit(started)]
    stack.timings["sigterm"] = {p.name: p.stop_seconds for p in stack.processes.values()}
    assert not late, stack.report(f"still running after their grace period: {late}")
    leftovers = {p.name: p.leftovers() for p in stack.processes.values() if p.leftovers()}
    assert not leftovers, stack.report(f"processes left after shutdown: {leftovers}")
    # A stopped worker removes its heartbeat file: its probe now fails.
    for name, worker in stack.workers().items():
        env = {**stack.base_env, "WORKER_HEARTBEAT_FILE": worker.env["WORKER_HEARTBEAT_FILE"]}
        assert probe(stack, "worker", env).returncode == 1, stack.report(f"{name} probe")
