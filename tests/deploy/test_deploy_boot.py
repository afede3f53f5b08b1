"""Tier 3, deploy: boot the deployment files' own commands, one variant per broker.

No Docker engine or cluster runs here, so the files' contents are booted as local processes:
for one supported variant per broker with compose and Kubernetes, each role runs with the argv
and environment read from compose.yaml, then from `kubectl kustomize overlays/dev` (with
components/flower and flower-ingress: Flower under its URL prefix), against throwaway servers
on 127.0.0.1; then the files' own health checks and probes run and must pass, and a job
makes the round trip web -> broker -> worker -> DB.

What a local run changes (host names, server ports/credentials, bind ports, each pod's /tmp)
is listed in tests/deploy/boot_environment.py; test_roles_run_the_files_commands checks
that nothing else differs. Every process is killed by PID after each boot, also on failure.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.rendering import copy_project, uv_sync
from support.variants import SUPPORTED, answer

from .boot_environment import WHY, local_image_environment
from .boot_launch import DeployedRun


def one_variant_per_broker():
    """The first supported variant of each broker that ships compose and Kubernetes files."""
    chosen = {}
    for variant in SUPPORTED:
        broker = answer(variant, "broker")
        both = answer(variant, "use_compose") and answer(variant, "use_kubernetes")
        if broker not in chosen and both:
            chosen[broker] = variant
    assert set(chosen) == {"redis", "rabbitmq"}, f"no variant with both files for {chosen}"
    return [chosen["redis"], chosen["rabbitmq"]]


SOURCES = ("compose", "kubernetes")
PARAMS = [(variant, source) for variant in one_variant_per_broker() for source in SOURCES]
pytestmark = [
    pytest.mark.timeout(600),
    # Module scope: the tests of one (variant, file) share one boot of it.
    pytest.mark.parametrize(
        ("variant", "source"),
        PARAMS,
        ids=[f"{variant.id}-{source}" for variant, source in PARAMS],
        scope="module",
    ),
]


@pytest.fixture(scope="module")
def installed(rendered, tmp_path_factory):
    """Return a function: a variant's project copied and `uv sync`ed, once per variant."""
    projects: dict[str, Path] = {}

    def _installed(variant) -> Path:
        if variant.id not in projects:
            folder = tmp_path_factory.mktemp("deploy-boot")
            project = copy_project(rendered(variant), folder / "service")
            uv_sync(project)
            projects[variant.id] = project
        return projects[variant.id]

    return _installed


@pytest.fixture(scope="module")
def deployed(variant, source, installed, tmp_path_factory):
    """Boot the variant from one file; every process is killed by PID afterwards."""
    project = installed(variant)
    folder = tmp_path_factory.mktemp(f"{source}-run")
    if source == "compose":
        booted = DeployedRun.from_compose(project, folder)
    else:
        booted = DeployedRun.from_kubernetes(project, folder)
    started = time.monotonic()
    try:
        booted.boot()
        booted.wait_until_healthy()
        yield booted
    finally:
        booted.timings["total"] = round(time.monotonic() - started, 1)
        print(f"\n{booted.source} of {variant.id}: {booted.timings}")
        print("  " + "\n  ".join(booted.changes()))
        booted.close()


def expected_roles(deployed: DeployedRun) -> set[str]:
    answers = deployed.answers
    roles = {"migrate", "web"} | {f"worker-{q.replace('_', '-')}" for q in answers["queues"]}
    roles |= {"beat"} if answers["use_beat"] else set()
    roles |= {"flower"} if answers["use_flower"] else set()
    return roles


def test_roles_run_the_files_commands(deployed):
    """Every role ran with the file's argv; its environment differs only as documented."""
    assert deployed.migrate_exit == 0
    assert set(deployed.roles) == expected_roles(deployed), deployed.report("roles")
    assert set(deployed.processes) == expected_roles(deployed) - {"migrate"}
    for name, role in deployed.roles.items():
        assert role.process.argv == role.file_process.argv, deployed.report(name)
        if name != "migrate":
            assert deployed.processes[name].argv == role.file_process.argv
            assert deployed.processes[name].alive(), deployed.report(f"{name} is not running")
        image = local_image_environment(deployed.project, role.folder)
        file_env, local_env = role.file_process.env, role.process.env
        changed = {key for key in file_env if local_env.get(key) != file_env[key]}
        added = set(local_env) - set(file_env) - set(image)
        recorded = {change.name for change in role.changes}
        assert changed | added == recorded, deployed.report(
            f"{name}: changed {sorted(changed)}, added {sorted(added)}, recorded {sorted(recorded)}"
        )
        assert recorded <= set(WHY), deployed.report(f"{name}: undocumented {recorded - set(WHY)}")
        for key in changed:
            if "://" in file_env[key]:
                before, after = urlsplit(file_env[key]), urlsplit(local_env[key])
                assert (before.scheme, before.query) == (after.scheme, after.query), key
                assert after.hostname == "127.0.0.1", deployed.report(f"{name}: {key}")


def test_every_probe_of_the_file_passes(deployed):
    """Each running role's own health checks (compose) or probes (Kubernetes) pass."""
    for name in deployed.processes:
        kinds = {probe.kind for probe in deployed.roles[name].probes}
        compose = deployed.source == "compose.yaml"
        expected = {"healthcheck"} if compose else {"livenessProbe", "readinessProbe"}
        assert expected <= kinds, deployed.report(f"{name} has probes {sorted(kinds)}")
    results = deployed.probe_results()
    failing = {probe: output for probe, (passed, output) in results.items() if not passed}
    assert not failing, deployed.report(f"probes failing: {failing}")
    print(f"\n{deployed.source}: {len(results)} probes passed")


def test_a_job_round_trips_through_the_files_roles(deployed):
    """POST /jobs -> the job queue's worker (run with the file's command) settles it."""
    job = deployed.round_trip()
    queue = deployed.answers["job_queue"]
    assert job["status"] == "succeeded", deployed.report(f"job: {job}")
    assert job["result"]["queue"] == queue, deployed.report(f"job: {job}")
    assert job["result"]["processed_by"].startswith(f"{queue}@"), deployed.report(f"job: {job}")
    results = deployed.probe_results()
    failing = {probe: output for probe, (passed, output) in results.items() if not passed}
    assert not failing and not deployed.dead(), deployed.report(f"after the job: {failing}")
