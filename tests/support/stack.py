"""Boot one variant: install it, start its servers, migrate, then every long-running role.

Every role runs with exactly the argv `python -m <pkg>.entrypoints` prints inside the rendered
project's own virtual environment, and with only the environment variables its row of the
contract lists (plus PATH, HOME, LANG and PYTHONUNBUFFERED), so Flower, for one, never sees a
database URL or SECRET_KEY.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .processes import Process, close_all, run_to_log, tail, wait_for
from .rendering import copy_project, rendered_answers, run, uv_sync
from .servers import (
    HOST,
    PostgresDatabase,
    RedisServer,
    SqliteDatabase,
    free_port,
    rabbit_broker,
    redis_broker,
    results_server,
)

MIGRATE_TIMEOUT = 120
START_TIMEOUT = 90
HTTP_TIMEOUT = 10
# SIGTERM-to-SIGKILL grace of the roles without a task time limit, as the deployment files
# give them (compose stop_grace_period / Kubernetes terminationGracePeriodSeconds).
WEB_GRACE_SECONDS = 30
FLOWER_GRACE_SECONDS = 10
BEAT_HEARTBEAT_SECONDS = "2"
WORKER_CONCURRENCY = "1"


@dataclass
class Stack:
    """A booted variant: its servers, its processes and how to reach them."""

    variant_id: str
    project: Path
    folder: Path
    package: str
    answers: dict[str, Any]
    commands: dict[str, Any]
    base_env: dict[str, str]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    flower_auth: tuple[str, str] = field(
        default_factory=lambda: ("admin", secrets.token_urlsafe(18))
    )
    processes: dict[str, Process] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    broker: Any = None
    results: RedisServer | None = None
    results_url: str = ""
    database: Any = None
    web_port: int = 0
    flower_port: int = 0
    # Each role's metrics port, filled by environments() (Flower's metrics are on its own port).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    grace_seconds: int = 0
    # Hooks for the fault tier (set before boot(); the boot tier leaves them empty):
    # extra variables per role: key "all", "worker" (every worker) or a role name.
    env_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    # Redis broker with an append-only file (fsync always), so a restart keeps its messages.
    persistent_broker: bool = False
    # Replaces the PostgreSQL database of its own (an object with url() and close()).
    database_factory: Callable[[], Any] | None = None

    # --- what the tests read -------------------------------------------------------------

    @property
    def worker_queues(self) -> list[str]:
        return list(self.commands["worker"])

    @property
    def job_queue(self) -> str:
        return self.answers["job_queue"]

    @property
    def web_url(self) -> str:
        return f"http://{HOST}:{self.web_port}"

    @property
    def flower_url(self) -> str:
        return f"http://{HOST}:{self.flower_port}"

    def workers(self) -> dict[str, Process]:
        return {name: p for name, p in self.processes.items() if name.startswith("worker-")}

    def get(self, path: str, *, auth: bool = False, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        headers |= kwargs.pop("headers", None) or {}
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.get(self.web_url + path, headers=headers, **kwargs)

    def post(self, path: str, body: Any, *, auth: bool = False, **kwargs: Any):
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        headers |= kwargs.pop("headers", None) or {}
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.post(self.web_url + path, json=body, headers=headers, **kwargs)

    def diagnostics(self) -> dict[str, Any]:
        response = self.get("/health/celery", auth=True)
        assert response.status_code == 200, self.report(
            f"/health/celery answered {response.status_code}: {response.text[:500]}"
        )
        return response.json()

    def role_env(self, role: str) -> dict[str, str]:
        """Return the environment of a role (a copy: callers may add to it)."""
        return dict(self.processes[role].env)

    # --- failure output ------------------------------------------------------------------

    def dead(self) -> str | None:
        """Return why the stack is broken (a role exited), or None."""
        for process in self.processes.values():
            if process.popen is not None and not process.alive():
                return f"{process.name} exited with code {process.popen.returncode}"
        return None

    def report(self, headline: str = "") -> str:
        """Return the headline, every process's state and the tail of every log."""
        parts = [headline, f"== boot of {self.variant_id} in {self.folder}"]
        parts += self.notes
        for process in self.processes.values():
            parts.append(f"--- {process.describe()} ---\n{tail(process.log)}")
        for server in (self.broker, self.results):
            if server is not None and hasattr(server, "logs"):
                parts.append(server.logs())
        return "\n".join(part for part in parts if part)

    def wait(self, check, *, timeout: float, what: str, guard: bool = True, interval=0.5):
        """wait_for with this stack's report, stopping early when a role died."""
        return wait_for(
            check,
            timeout=timeout,
            what=what,
            report=self.report,
            interval=interval,
            guard=self.dead if guard else None,
        )

    # --- boot ----------------------------------------------------------------------------

    def start_servers(self) -> None:
        self.results, self.results_url = results_server(self.folder)
        if self.answers["broker"] == "redis":
            self.broker, why = redis_broker(self.folder, persistent=self.persistent_broker)
        else:
            self.broker, why = rabbit_broker()
        self.notes.append(f"broker: {self.broker.describe()} ({why})")
        if self.answers["database"] == "postgresql":
            factory = self.database_factory or PostgresDatabase
            self.database = factory()
        else:
            self.database = SqliteDatabase(self.folder)

    def environments(self) -> dict[str, dict[str, str]]:
        """Return each role's environment, as the contract's table lists it."""
        connections = {
            "DATABASE_URL": self.database.url(),
            "BROKER_URL": self.broker.url(),
            "RESULT_BACKEND_URL": self.results_url,
        }
        base = self.base_env
        envs = {
            "migrate": {**base, "DATABASE_URL": connections["DATABASE_URL"]},
            "web": {
                **base,
                **connections,
                "SECRET_KEY": secrets.token_urlsafe(32),
                "DIAGNOSTICS_TOKEN": self.token,
                "WEB_BIND": f"{HOST}:{self.web_port}",
                "WEB_WORKERS": "2",
                "WEB_THREADS": "4",
            },
        }
        for queue in self.worker_queues:
            envs[f"worker-{queue}"] = {
                **base,
                **connections,
                "WORKER_CONCURRENCY": WORKER_CONCURRENCY,
                "WORKER_HEARTBEAT_FILE": str(self.folder / f"worker-{queue}.heartbeat"),
            }
        if "beat" in self.commands:
            envs["beat"] = {
                **base,
                **connections,
                "BEAT_HEARTBEAT_SECONDS": BEAT_HEARTBEAT_SECONDS,
                "BEAT_SCHEDULE_FILE": str(self.folder / "celerybeat-schedule"),
                "BEAT_HEARTBEAT_FILE": str(self.folder / "beat.heartbeat"),
            }
        if "flower" in self.commands:
            # Broker-only: no DATABASE_URL, no SECRET_KEY.
            envs["flower"] = {
                **base,
                "BROKER_URL": connections["BROKER_URL"],
                "RESULT_BACKEND_URL": connections["RESULT_BACKEND_URL"],
                "FLOWER_PORT": str(self.flower_port),
                "FLOWER_ADDRESS": HOST,
                "FLOWER_BASIC_AUTH": ":".join(self.flower_auth),
            }
        for name, env in envs.items():
            if name not in ("migrate", "flower"):
                # Each role's metrics listener on a port of its own, on loopback only.
                self.metrics_ports.setdefault(name, free_port())
                env["METRICS_ADDRESS"] = HOST
                env["METRICS_PORT"] = str(self.metrics_ports[name])
                env["METRICS_DIR"] = str(self.folder / "metrics")
            env.update(self.env_overrides.get("all", {}))
            if name.startswith("worker-"):
                env.update(self.env_overrides.get("worker", {}))
            env.update(self.env_overrides.get(name, {}))
        return envs

    def migrate(self, env: dict[str, str]) -> None:
        log = self.folder / "migrate.log"
        argv = self.commands["migrate"]
        code = run_to_log(argv, cwd=self.project, env=env, log=log, timeout=MIGRATE_TIMEOUT)
        outcome = f"exited {code}" if code is not None else f"ran over {MIGRATE_TIMEOUT} s"
        assert code == 0, self.report(f"migrate {argv} {outcome}:\n{tail(log)}")

    def start_roles(self, envs: dict[str, dict[str, str]]) -> None:
        argvs: dict[str, list[str]] = {"web": self.commands["web"]}
        argvs |= {f"worker-{q}": argv for q, argv in self.commands["worker"].items()}
        if "beat" in envs:
            argvs["beat"] = self.commands["beat"]
        if "flower" in envs:
            argvs["flower"] = self.commands["flower"]
        graces = {"web": WEB_GRACE_SECONDS, "flower": FLOWER_GRACE_SECONDS}
        for name, argv in argvs.items():
            process = Process(
                name=name,
                argv=list(argv),
                env=envs[name],
                cwd=self.project,
                log=self.folder / f"{name}.log",
                grace_seconds=graces.get(name, self.grace_seconds),
            )
            self.processes[name] = process
            process.start()

    def restart_role(self, name: str) -> Process:
        """Start an exited role again with the same argv and environment (same log file)."""
        process = self.processes[name]
        assert not process.alive(), f"{name} is still running (pid {process.pid})"
        process.start()
        return process

    def wait_until_up(self) -> None:
        self.wait(
            lambda: self.get("/health/ready").status_code == 200,
            timeout=START_TIMEOUT,
            what="web /health/ready never answered 200",
        )

        def consumed() -> bool:
            workers = self.diagnostics()["workers"]
            queues = {queue for names in workers.values() for queue in names}
            return set(self.worker_queues) <= queues and workers

        self.wait(consumed, timeout=START_TIMEOUT, what="not every worker consumes its queue")
        if "flower" in self.processes:
            self.wait(
                lambda: requests.get(self.flower_url + "/healthcheck", timeout=3).ok,
                timeout=START_TIMEOUT,
                what="Flower /healthcheck never answered 200",
            )
        for process in self.processes.values():
            process.remember_tree()

    def boot(self) -> None:
        started = time.monotonic()
        self.start_servers()
        self.timings["servers"] = round(time.monotonic() - started, 1)
        envs = self.environments()
        started = time.monotonic()
        self.migrate(envs["migrate"])
        self.timings["migrate"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        self.start_roles(envs)
        self.wait_until_up()
        self.timings["roles up"] = round(time.monotonic() - started, 1)

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process by PID, then stop and remove the servers; never raises early."""
        errors = close_all([(p.name, p.kill) for p in self.processes.values()])
        errors += close_all(
            [
                ("broker", self.broker.close if self.broker is not None else None),
                ("results", self.results.stop if self.results is not None else None),
                ("database", self.database.close if self.database is not None else None),
            ]
        )
        if errors:
            raise AssertionError("teardown failed:\n" + "\n".join(errors))


def install(rendered_project: Path, folder: Path) -> Path:
    """Copy the rendered project (the render tier keeps checking copier's output) and sync it."""
    project = copy_project(rendered_project, folder / "service")
    uv_sync(project)
    return project


def prepare(variant_id: str, rendered_project: Path, folder: Path) -> Stack:
    """Install a rendered variant and read its commands; starts nothing yet."""
    started = time.monotonic()
    project = install(rendered_project, folder)
    synced = round(time.monotonic() - started, 1)
    answers = rendered_answers(project)
    package = answers["package_name"]
    python = str(project / ".venv" / "bin" / "python")
    commands = json.loads(run([python, "-m", f"{package}.entrypoints"], cwd=project).stdout)
    grace = run(
        [
            python,
            "-c",
            f"from {package}.celery.profile import HARD_TIME_LIMIT, grace_period_seconds;"
            "print(grace_period_seconds(HARD_TIME_LIMIT))",
        ],
        cwd=project,
    ).stdout
    base_env = {
        "PATH": f"{project / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # A home of its own: gunicorn puts its control socket in ~/.gunicorn.
        "HOME": str(folder / "home"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    (folder / "home").mkdir()
    stack = Stack(
        variant_id=variant_id,
        project=project,
        folder=folder,
        package=package,
        answers=answers,
        commands=commands,
        base_env=base_env,
        web_port=free_port(),
        flower_port=free_port(),
        grace_seconds=int(grace),
    )
    stack.timings["uv sync"] = synced
    return stack


def probe(stack: Stack, role: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a probe command from the entrypoints with a role's environment."""
    argv = stack.commands[f"{role}_probe"]
    return subprocess.run(
        argv, cwd=stack.project, env=env, capture_output=True, text=True, timeout=30
    )


def send_task(stack: Stack, task: str, args: list[Any]) -> None:
    """Send a task by name through the worker app's own routes (a subprocess of the service)."""
    env = {**stack.role_env(f"worker-{stack.worker_queues[0]}"), "METRICS_PORT": "0"}
    code = (
        f"from {stack.package}.worker import worker_app\n"
        f"worker_app.send_task({task!r}, args={args!r})\n"
    )
    python = str(stack.project / ".venv" / "bin" / "python")
    completed = subprocess.run(
        [python, "-c", code], cwd=stack.project, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, stack.report(f"send_task {task}: {completed.stderr}")
