"""Tier 4, boot: `make run` runs the whole service locally, without Docker; Ctrl-C stops it all.

For each supported Redis variant: install the rendered project, let `make .env` write its local
.env, point that file at a throwaway redis-server and free ports (as a developer edits it), then
run the README's one command, `make run`, in a session of its own. A job posted to the web must
settle on the job queue's worker; then SIGINT to the whole process group (what Ctrl-C in a
terminal sends) must stop every process the run started within the grace period.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import requests
from support.processes import Process, still_alive, wait_for
from support.rendering import PROJECT_ENV, rendered_answers, run
from support.servers import (
    DEFAULT_REDIS_URL,
    HOST,
    SHARED_REDIS_BROKER_DB,
    SHARED_REDIS_RESULTS_DB,
    free_port,
    shared_redis_url,
    throwaway_redis,
    with_db,
)
from support.stack import install
from support.variants import SUPPORTED, answer

# The local run is documented against Redis; the RabbitMQ variants differ only in BROKER_URL.
REDIS_VARIANTS = [variant for variant in SUPPORTED if answer(variant, "broker") == "redis"]
pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.parametrize("variant", REDIS_VARIANTS, ids=[v.id for v in REDIS_VARIANTS]),
]

START_SECONDS = 120
JOB_SECONDS = 60
HTTP_TIMEOUT = 10
# honcho SIGTERMs every role at once and SIGKILLs what still runs 5 s (its KILL_WAIT) after the
# first one stopped; the rest is margin for a loaded 2-core machine.
GRACE_SECONDS = 30
# Each Procfile process is started by honcho as "<name>.1".
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):", re.MULTILINE)


def set_variables(env_file: Path, values: dict[str, str]) -> None:
    """Replace (or add) variables of a .env file, keeping every other line as it is."""
    lines = env_file.read_text().splitlines()
    for name, value in values.items():
        line = f"{name}={value}"
        matches = [i for i, text in enumerate(lines) if text.startswith(f"{name}=")]
        if matches:
            lines[matches[0]] = line
        else:
            lines.append(line)
    env_file.write_text("\n".join(lines) + "\n")


def variables(env_file: Path) -> dict[str, str]:
    """Return the variables of a .env file."""
    pairs = (line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


def command_environment(folder: Path) -> dict[str, str]:
    """The developer's shell: this one without the template's venv, a HOME of the run's own.

    gunicorn puts its control socket in ~/.gunicorn; uv keeps using the machine's cache.
    """
    cache = run(["uv", "cache", "dir"], cwd=folder, env=PROJECT_ENV).stdout.strip()
    environment = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    environment.update(PROJECT_ENV)
    environment.setdefault("PYENV_ROOT", str(Path.home() / ".pyenv"))
    environment |= {"HOME": str(folder / "home"), "UV_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}
    (folder / "home").mkdir(exist_ok=True)
    return environment


def redis_urls(folder: Path):
    """Return (the throwaway server or None, BROKER_URL, RESULT_BACKEND_URL)."""
    server = throwaway_redis(folder, "local")
    if server is not None:
        return server, server.url(0), server.url(1)
    shared = shared_redis_url() or DEFAULT_REDIS_URL
    return None, with_db(shared, SHARED_REDIS_BROKER_DB), with_db(shared, SHARED_REDIS_RESULTS_DB)


def cmdlines(pids) -> list[str]:
    """Return the command lines of live processes."""
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return lines


def test_make_run_settles_a_job_and_ctrl_c_stops_every_process(variant, rendered, tmp_path):
    """`make run`: migrations, every role of the Procfile; a job succeeds; SIGINT stops it all."""
    folder = tmp_path
    project = install(rendered(variant), folder)
    answers = rendered_answers(project)
    package, queues = answers["package_name"], answers["queues"]
    environment = command_environment(folder)
    run(["make", ".env"], cwd=project, env=environment)
    env_file = project / ".env"
    local = variables(env_file)
    assert local["DATABASE_URL"] == f"sqlite:///{package}.db"

    redis, broker_url, results_url = redis_urls(folder)
    web_port = free_port()
    set_variables(
        env_file,
        {
            "BROKER_URL": broker_url,
            "RESULT_BACKEND_URL": results_url,
            "WEB_BIND": f"{HOST}:{web_port}",
            "FLOWER_PORT": str(free_port()),
            "WORKER_CONCURRENCY": "1",
            # Files of this run's own, not the shared /tmp defaults.
            "WORKER_HEARTBEAT_FILE": str(folder / "worker.heartbeat"),
            "BEAT_SCHEDULE_FILE": str(folder / "celerybeat-schedule"),
            "BEAT_HEARTBEAT_FILE": str(folder / "beat.heartbeat"),
        },
    )
    roles = PROCFILE_LINE.findall((project / "Procfile").read_text())
    runner = Process(
        name="make run",
        argv=["make", "run"],
        env=environment,
        cwd=project,
        log=folder / "make-run.log",
        grace_seconds=GRACE_SECONDS,
    )
    web = f"http://{HOST}:{web_port}"
    token = {"Authorization": f"Bearer {local['DIAGNOSTICS_TOKEN']}"}

    def report() -> str:
        return f"--- {runner.describe()} ---\n{runner.tail(80)}"

    def guard() -> str | None:
        return None if runner.alive() else f"make run exited with {runner.popen.returncode}"

    def wait(check, timeout: float, what: str):
        return wait_for(check, timeout=timeout, what=what, report=report, guard=guard)

    try:
        started = time.monotonic()
        runner.start()
        wait(
            lambda: requests.get(f"{web}/health/ready", timeout=HTTP_TIMEOUT).status_code == 200,
            START_SECONDS,
            "web /health/ready never answered 200",
        )

        def every_queue_consumed():
            response = requests.get(f"{web}/health/celery", headers=token, timeout=HTTP_TIMEOUT)
            consumed = {q for names in response.json()["workers"].values() for q in names}
            return set(queues) <= consumed

        wait(every_queue_consumed, START_SECONDS, "not every queue has its worker")
        up_seconds = round(time.monotonic() - started, 1)
        log = runner.log_text()
        assert "Running upgrade" in log.split("honcho start")[0], report()
        for role in roles:
            assert f"{role}.1 started" in log, report()

        created = requests.post(
            f"{web}/jobs", json={"name": "local-run", "duration": 0.2}, timeout=HTTP_TIMEOUT
        )
        assert created.status_code == 202, f"POST /jobs: {created.text}\n{report()}"
        job_id = created.json()["id"]

        def settled():
            job = requests.get(f"{web}/jobs/{job_id}", timeout=HTTP_TIMEOUT).json()
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        job = wait(settled, JOB_SECONDS, f"job {job_id} was not settled")
        assert job["status"] == "succeeded", f"{job}\n{report()}"
        assert job["result"]["processed_by"].startswith(f"{answers['job_queue']}@"), report()
        assert (project / f"{package}.db").is_file(), "the job is not in .env's SQLite file"

        runner.remember_tree()
        tree = dict(runner.tree)
        running = " | ".join(cmdlines(still_alive(tree)))
        for role_command in ("gunicorn", *(f"--queues {queue}" for queue in queues)):
            assert role_command in running, f"no process runs {role_command!r}\n{report()}"
        stop_started = time.monotonic()
        runner.send_signal(signal.SIGINT, group=True)  # Ctrl-C: the terminal's process group
        exited = runner.wait_exit(stop_started)
        assert exited, f"make run still runs {GRACE_SECONDS} s after SIGINT\n{report()}"
        # Every process the run started (the roles in sessions of their own included) is gone.
        wait_for(
            lambda: not runner.leftovers(),
            timeout=max(0.0, stop_started + GRACE_SECONDS - time.monotonic()),
            what="processes of make run are left after SIGINT",
            report=lambda: "\n".join(cmdlines(runner.leftovers())) + "\n" + report(),
        )
        log = runner.log_text()
        for role in roles:
            assert f"sending SIGTERM to {role}.1" in log, report()
        print(
            f"\nlocal run of {variant.id}: {len(tree)} processes, up in {up_seconds} s, "
            f"stopped in {runner.stop_seconds} s, SIGKILL needed: {'SIGKILL' in log}"
        )
    finally:
        runner.kill()
        if redis is not None:
            redis.stop()
