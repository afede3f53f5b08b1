"""Tier 3: compose.yaml is valid, every service is checked, secrets are required, never written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from support.params import params_with
from support.rendering import rendered_answers, run

from .commands import (
    MissingVariableError,
    app_services,
    compose_processes,
    load_compose,
    required_variables,
)
from .helpers import TEST_COMPOSE_VARIABLES

pytestmark = pytest.mark.timeout(600)

SERVER_CHECKS = {
    "redis": ["CMD", "redis-cli", "ping"],
    "postgres": ["CMD", "pg_isready"],
    "rabbitmq": ["CMD", "rabbitmq-diagnostics"],
    "prometheus": ["CMD", "wget", "-q", "--spider"],
}


@params_with("use_compose")
def test_compose_files_match_the_compose_specification(variant, rendered):
    """check-jsonschema's compose-spec schema accepts compose.yaml and compose.override.yaml."""
    project = rendered(variant)
    checker = Path(sys.executable).parent / "check-jsonschema"
    run(
        [
            str(checker),
            "--builtin-schema",
            "vendor.compose-spec",
            "compose.yaml",
            "compose.override.yaml",
        ],
        cwd=project,
    )


@params_with("use_compose")
def test_servers_and_roles_match_the_answers(variant, rendered):
    """Redis always; RabbitMQ and PostgreSQL when chosen; one worker service per queue."""
    project = rendered(variant)
    answers = rendered_answers(project)
    services = set(load_compose(project)["services"])
    # prometheus: the optional `monitoring` profile (tests/deploy/test_deploy_monitoring.py).
    expected = {"redis", "migrate", "web", "prometheus"}
    expected |= {f"worker-{queue.replace('_', '-')}" for queue in answers["queues"]}
    expected |= {"rabbitmq"} if answers["broker"] == "rabbitmq" else set()
    expected |= {"postgres"} if answers["database"] == "postgresql" else set()
    expected |= {"beat"} if answers["use_beat"] else set()
    expected |= {"flower"} if answers["use_flower"] else set()
    assert services == expected


@params_with("use_compose")
def test_every_service_has_a_healthcheck(variant, rendered):
    """Servers use their own check; roles use python (no curl in slim images) or the probes."""
    project = rendered(variant)
    package = rendered_answers(project)["package_name"]
    for name, spec in load_compose(project)["services"].items():
        if name == "migrate":
            # A one-off: its health is its exit code (service_completed_successfully).
            assert spec["healthcheck"] == {"disable": True}
            continue
        test = spec["healthcheck"]["test"]
        if name in SERVER_CHECKS:
            assert test[: len(SERVER_CHECKS[name])] == SERVER_CHECKS[name]
        elif name == "web":
            assert test[:3] == ["CMD", "python", "-c"] and "/health/" in test[3]
        elif name == "flower":
            assert test[:3] == ["CMD", "python", "-c"] and "/healthcheck" in test[3]
        else:
            role = "beat" if name == "beat" else "worker"
            assert test == ["CMD", "python", "-m", f"{package}.probes", role]


@params_with("use_compose")
def test_roles_wait_for_healthy_servers_and_the_migration(variant, rendered):
    """depends_on always has a condition; web, workers and beat start after migrate succeeded."""
    project = rendered(variant)
    services = load_compose(project)["services"]
    for name, spec in services.items():
        depends_on = spec.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, condition in depends_on.items():
            assert target in services
            expected = (
                "service_completed_successfully" if target == "migrate" else "service_healthy"
            )
            assert condition == {"condition": expected}, (name, target)
        if name in ("web", "beat") or name.startswith("worker-"):
            assert "migrate" in depends_on, name


@params_with("use_compose")
def test_roles_share_one_hardened_definition(variant, rendered):
    """Every role runs the same image read-only, with /tmp on tmpfs and no capabilities."""
    project = rendered(variant)
    roles = app_services(load_compose(project))
    assert len({(spec["image"], spec["build"]) for spec in roles.values()}) == 1
    for name, spec in roles.items():
        assert spec["read_only"] is True, name
        assert spec["tmpfs"] == ["/tmp"], name
        assert spec["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in spec["security_opt"], name
        assert isinstance(spec["command"], list), f"{name}: exec form, no shell"


@params_with("use_compose")
def test_secrets_are_required_and_never_written(variant, rendered):
    """Each secret is `${VAR:?message}`; rendering without one fails; no URL holds a password."""
    project = rendered(variant)
    answers = rendered_answers(project)
    compose = load_compose(project)
    required = set(required_variables(compose))
    expected = {"SECRET_KEY"}
    expected |= {"POSTGRES_PASSWORD"} if answers["database"] == "postgresql" else set()
    expected |= {"RABBITMQ_PASSWORD"} if answers["broker"] == "rabbitmq" else set()
    expected |= {"FLOWER_BASIC_AUTH"} if answers["use_flower"] else set()
    assert required == expected
    for name in expected:
        variables = {key: value for key, value in TEST_COMPOSE_VARIABLES.items() if key != name}
        with pytest.raises(MissingVariableError, match=name):
            compose_processes(project, variables)
    text = (project / "compose.yaml").read_text()
    for url in re.findall(r"[a-z+]+://[^\s\"']+", text):
        userinfo = url.split("://", 1)[1].split("@", 1)[0] if "@" in url else ""
        assert not userinfo or "${" in userinfo, f"a password is written in {url}"


@params_with("use_compose")
def test_beat_is_one_unscaled_service(variant, rendered):
    """At most one service runs beat, with no replicas setting and no `-B` on any worker."""
    project = rendered(variant)
    answers = rendered_answers(project)
    processes = compose_processes(project, TEST_COMPOSE_VARIABLES)
    beats = [p for p in processes.values() if "beat" in p.argv]
    assert len(beats) == (1 if answers["use_beat"] else 0)
    services = load_compose(project)["services"]
    for process in beats:
        spec = services[process.role]
        assert "scale" not in spec and "replicas" not in spec.get("deploy", {})
    for process in processes.values():
        assert "-B" not in process.argv and "--beat" not in process.argv


@params_with("use_compose")
def test_sqlite_shares_one_volume_and_postgres_uses_its_server(variant, rendered):
    """SQLite: one named volume at /data for every role that opens the database."""
    project = rendered(variant)
    answers = rendered_answers(project)
    processes = compose_processes(project, TEST_COMPOSE_VARIABLES)
    roles = app_services(load_compose(project))
    for name, process in processes.items():
        if "DATABASE_URL" not in process.env:
            assert name == "flower", f"{name} has no DATABASE_URL"
            continue
        url = process.env["DATABASE_URL"]
        if answers["database"] == "sqlite":
            assert url == f"sqlite:////data/{answers['package_name']}.db"
            assert "sqlite-data:/data" in roles[name]["volumes"], name
        else:
            assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url


@params_with("use_compose")
def test_override_rebuilds_every_role_that_runs_the_code_on_change(variant, rendered):
    """`docker compose up --watch`: web, every worker and beat rebuild on src/ and uv.lock."""
    project = rendered(variant)
    answers = rendered_answers(project)
    override = load_compose(project, "compose.override.yaml")["services"]
    roles = {"web"} | {f"worker-{queue.replace('_', '-')}" for queue in answers["queues"]}
    roles |= {"beat"} if answers["use_beat"] else set()
    watched = {name for name, spec in override.items() if "develop" in spec}
    assert watched == roles
    for name in roles:
        assert override[name]["develop"]["watch"] == [
            {"action": "rebuild", "path": "./src"},
            {"action": "rebuild", "path": "./uv.lock"},
        ], name


@params_with("use_compose")
def test_optional_services_sit_behind_their_profiles(variant, rendered):
    """Flower (`--profile flower`) and Prometheus (`--profile monitoring`) are off by default."""
    project = rendered(variant)
    answers = rendered_answers(project)
    services = load_compose(project)["services"]
    profiled = {name: spec["profiles"] for name, spec in services.items() if "profiles" in spec}
    expected = {"prometheus": ["monitoring"]}
    expected |= {"flower": ["flower"]} if answers["use_flower"] else {}
    assert profiled == expected
    # Nothing that starts by default waits for a profiled service.
    for name, spec in services.items():
        if name not in profiled:
            assert not set(spec.get("depends_on", {})) & set(profiled), name
