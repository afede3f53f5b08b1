"""Tier 3: compose and Kubernetes run exactly the commands the service defines, no drift.

The service's own `python -m <package>.entrypoints` is the reference; every container
command, health probe and environment variable read from compose.yaml and from the built
kustomize output must agree with it and with the variables the service reads.
"""

from __future__ import annotations

import re

import pytest
from support.params import params_with
from support.rendering import rendered_answers, run_with_service_source

from .commands import app_services, compose_processes, kubernetes_processes, load_compose
from .helpers import (
    OVERLAYS,
    TEST_COMPOSE_VARIABLES,
    TEST_SECRETS,
    built_with_all_components,
    consumed_queue,
    expected_command,
    pod_spec,
    service_commands,
    service_grace_period,
    workloads,
)

pytestmark = pytest.mark.timeout(600)

# The variables each role cannot start without (the service's settings.py contract).
REQUIRED_ENV = {
    "migrate": {"DATABASE_URL"},
    "web": {"DATABASE_URL", "BROKER_URL", "RESULT_BACKEND_URL", "SECRET_KEY"},
    "worker": {"DATABASE_URL", "BROKER_URL", "RESULT_BACKEND_URL"},
    "beat": {"DATABASE_URL", "BROKER_URL", "RESULT_BACKEND_URL"},
    "flower": {"BROKER_URL", "FLOWER_BASIC_AUTH"},
}

# Every supported variant that renders compose.yaml or Kubernetes manifests.
DEPLOYING = params_with("use_compose", "use_kubernetes")


def deployment_processes(project):
    """Yield (where, processes) for compose.yaml and each overlay built with every component."""
    answers = rendered_answers(project)
    if answers["use_compose"]:
        yield "compose.yaml", compose_processes(project, TEST_COMPOSE_VARIABLES)
    if answers["use_kubernetes"]:
        for overlay in OVERLAYS:
            documents = built_with_all_components(project, overlay)
            yield f"overlays/{overlay}", kubernetes_processes(documents, TEST_SECRETS)


def variables_the_service_reads(project) -> set[str]:
    """Return every quoted UPPER_CASE name in the service's code and migrations."""
    package = rendered_answers(project)["package_name"]
    names = set()
    for path in [*(project / "src" / package).rglob("*.py"), project / "migrations" / "env.py"]:
        names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", path.read_text()))
    return names


def role_kind(role: str) -> str:
    """Return 'worker' for 'worker-<queue>', else the role itself."""
    return "worker" if role.startswith("worker-") else role


@DEPLOYING
def test_entrypoints_lists_every_role_and_queue(variant, rendered):
    """`python -m <package>.entrypoints` prints each rendered role and one worker per queue."""
    project = rendered(variant)
    answers = rendered_answers(project)
    commands = service_commands(project)
    assert sorted(commands["worker"]) == sorted(answers["queues"])
    assert ("beat" in commands) == answers["use_beat"]
    assert ("flower" in commands) == answers["use_flower"]


@DEPLOYING
def test_deployment_commands_are_the_service_commands(variant, rendered):
    """Every container command and exec probe equals the service's own definition."""
    project = rendered(variant)
    commands = service_commands(project)
    for where, processes in deployment_processes(project):
        expected_roles = {
            "migrate",
            "web",
            *(f"worker-{q.replace('_', '-')}" for q in commands["worker"]),
        }
        expected_roles |= {role for role in ("beat", "flower") if role in commands}
        assert set(processes) == expected_roles, where
        for role, process in processes.items():
            assert process.argv == expected_command(commands, role), f"{where}: {role}"
            if role_kind(role) in ("worker", "beat"):
                assert process.probe == commands[f"{role_kind(role)}_probe"], f"{where}: {role}"


@DEPLOYING
def test_every_declared_queue_is_consumed_everywhere(variant, rendered):
    """The answers' queues, the service's QUEUES and each file's worker commands are one set."""
    project = rendered(variant)
    queues = sorted(rendered_answers(project)["queues"])
    assert sorted(service_commands(project)["worker"]) == queues
    for where, processes in deployment_processes(project):
        consumed = sorted(
            consumed_queue(process.argv)
            for role, process in processes.items()
            if role_kind(role) == "worker"
        )
        assert consumed == queues, where


@params_with("use_kubernetes")
def test_kubernetes_roles_match_compose_roles(variant, rendered):
    """Kubernetes runs the same set of roles as compose, with the same commands."""
    project = rendered(variant)
    found = {where: processes for where, processes in deployment_processes(project)}
    if "compose.yaml" not in found:
        assert not rendered_answers(project)["use_compose"]
        return
    compose = {role: process.argv for role, process in found["compose.yaml"].items()}
    for overlay in OVERLAYS:
        kubernetes = {role: process.argv for role, process in found[f"overlays/{overlay}"].items()}
        assert kubernetes == compose, overlay


@DEPLOYING
def test_environment_names_are_ones_the_service_reads(variant, rendered):
    """Each role gets the variables it needs, and none the service (or Flower) never reads."""
    project = rendered(variant)
    read = variables_the_service_reads(project)
    for where, processes in deployment_processes(project):
        for role, process in processes.items():
            names = set(process.env)
            assert REQUIRED_ENV[role_kind(role)] <= names, f"{where}: {role} lacks a variable"
            unknown = {
                n for n in names - read if not (role == "flower" and n.startswith("FLOWER_"))
            }
            assert not unknown, f"{where}: {role} sets {sorted(unknown)}, which nothing reads"


@params_with("use_kubernetes")
def test_kubernetes_grace_period_is_the_service_grace_period(variant, rendered):
    """terminationGracePeriodSeconds equals celery.profile.grace_period_seconds(limit) > limit."""
    project = rendered(variant)
    limit = rendered_answers(project)["task_time_limit"]
    expected = service_grace_period(project, limit)
    assert expected > limit
    for overlay in OVERLAYS:
        for workload in workloads(built_with_all_components(project, overlay)):
            role = workload["metadata"]["labels"]["app.kubernetes.io/component"]
            if role in ("worker", "beat"):
                assert pod_spec(workload)["terminationGracePeriodSeconds"] == expected, overlay


@params_with("use_compose")
def test_compose_grace_period_is_the_service_grace_period(variant, rendered):
    """stop_grace_period of workers and beat equals celery.profile.grace_period_seconds(limit)."""
    project = rendered(variant)
    limit = rendered_answers(project)["task_time_limit"]
    expected = f"{service_grace_period(project, limit)}s"
    for name, spec in app_services(load_compose(project)).items():
        if name == "beat" or name.startswith("worker-"):
            assert spec["stop_grace_period"] == expected, name


@params_with("use_flower")
def test_flower_listens_on_the_service_flower_port_everywhere(variant, rendered):
    """Flower's FLOWER_PORT in compose and Kubernetes is entrypoints.FLOWER_PORT."""
    project = rendered(variant)
    answers = rendered_answers(project)
    completed = run_with_service_source(
        project,
        ["-c", f"from {answers['package_name']}.entrypoints import FLOWER_PORT as p; print(p)"],
    )
    assert completed.returncode == 0, completed.stderr
    port = completed.stdout.strip()
    checked = 0
    for where, processes in deployment_processes(project):
        if "flower" in processes:
            assert str(processes["flower"].env.get("FLOWER_PORT")) == port, where
            checked += 1
    assert checked == answers["use_compose"] + answers["use_kubernetes"] * len(OVERLAYS)
