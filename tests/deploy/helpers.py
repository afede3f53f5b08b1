"""What the deploy tests share: kustomize builds, the objects' parts, the service's commands."""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from support.rendering import rendered_answers, run_with_service_source

from .commands import kustomize_build

OVERLAYS = ("dev", "prod")
KUBERNETES = Path("deploy") / "kubernetes"
# Secret values the tests give the manifests (never written in a file).
TEST_SECRETS = {
    "DATABASE_URL": "postgresql+psycopg://service:db-password@postgres:5432/service",
    "BROKER_URL": "redis://redis:6379/0",
    "RESULT_BACKEND_URL": "redis://redis:6379/1",
    "SECRET_KEY": "test-secret-key",
    "DIAGNOSTICS_TOKEN": "test-diagnostics-token",
    "FLOWER_BASIC_AUTH": "admin:flower-password",
}
# What compose reads from the environment or .env.
TEST_COMPOSE_VARIABLES = {
    "POSTGRES_PASSWORD": "db-password",
    "RABBITMQ_PASSWORD": "mq-password",
    "SECRET_KEY": "test-secret-key",
    "FLOWER_BASIC_AUTH": "admin:flower-password",
}


def seconds(duration: str | None, default: float | None = None) -> float:
    """Return a compose duration such as '330s' or '5m30s' in seconds (default when unset)."""
    if not duration and default is not None:
        return default
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    assert parts and duration, f"unexpected duration {duration!r}"
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


# --- kustomize -----------------------------------------------------------------------------


def components(project: Path) -> list[str]:
    """Return the names of the optional components the project ships."""
    folder = project / KUBERNETES / "components"
    return sorted(path.name for path in folder.iterdir() if (path / "kustomization.yaml").is_file())


def component_sets(project: Path) -> list[tuple[str, ...]]:
    """Return every subset of the project's components, from none to all."""
    names = components(project)
    return [
        subset for size in range(len(names) + 1) for subset in itertools.combinations(names, size)
    ]


@functools.cache
def build(project: Path, overlay: str, with_components: tuple[str, ...] | None = None) -> str:
    """Build an overlay as shipped (None) or with exactly the given components; return YAML.

    The overlay is copied and its `components:` list replaced, as a user enabling a
    component would edit it; the rendered project is left untouched.
    """
    if with_components is None:
        documents = kustomize_build(project / KUBERNETES / "overlays" / overlay)
        return yaml.safe_dump_all(documents, sort_keys=False)
    with tempfile.TemporaryDirectory(prefix="kustomize-") as scratch:
        copy = Path(scratch) / "kubernetes"
        shutil.copytree(project / KUBERNETES, copy)
        kustomization_file = copy / "overlays" / overlay / "kustomization.yaml"
        kustomization = yaml.safe_load(kustomization_file.read_text())
        kustomization["components"] = [f"../../components/{name}" for name in with_components]
        kustomization_file.write_text(yaml.safe_dump(kustomization, sort_keys=False))
        documents = kustomize_build(copy / "overlays" / overlay)
    return yaml.safe_dump_all(documents, sort_keys=False)


def built(project: Path, overlay: str, with_components: tuple[str, ...] | None = None):
    """Return the objects of an overlay build (see build)."""
    return [doc for doc in yaml.safe_load_all(build(project, overlay, with_components)) if doc]


def built_with_all_components(project: Path, overlay: str) -> list[dict[str, Any]]:
    """Return an overlay built with every component the project ships."""
    return built(project, overlay, tuple(components(project)))


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    """Return the pod spec of a Deployment or Job."""
    return document["spec"]["template"]["spec"]


def workloads(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the Deployments and Jobs of a build."""
    return [doc for doc in documents if doc["kind"] in ("Deployment", "Job")]


def component_of(document: dict[str, Any]) -> str:
    """Return an object's app.kubernetes.io/component label."""
    return document["metadata"]["labels"]["app.kubernetes.io/component"]


# --- the service's own definitions ---------------------------------------------------------


@functools.cache
def service_commands(project: Path) -> dict[str, Any]:
    """Return what `python -m <package>.entrypoints` prints: every role's command line.

    The module is run from the rendered src/ with the template's test interpreter, whose
    dev group provides the one third-party import on that path (kombu, for the queues).
    """
    package = rendered_answers(project)["package_name"]
    completed = run_with_service_source(project, ["-m", f"{package}.entrypoints"])
    if completed.returncode != 0:
        raise AssertionError(f"python -m {package}.entrypoints failed:\n{completed.stderr}")
    return json.loads(completed.stdout)


def service_grace_period(project: Path, task_time_limit: int) -> int:
    """Return the service's own celery.profile.grace_period_seconds(task_time_limit)."""
    package = rendered_answers(project)["package_name"]
    code = (
        f"from {package}.celery.profile import grace_period_seconds; "
        f"print(grace_period_seconds({task_time_limit}))"
    )
    completed = run_with_service_source(project, ["-c", code])
    if completed.returncode != 0:
        raise AssertionError(f"{code} failed:\n{completed.stderr}")
    return int(completed.stdout.strip())


def expected_command(commands: dict[str, Any], role: str) -> list[str]:
    """Return the service's command for a role named like a compose service."""
    if role.startswith("worker-"):
        by_role = {
            f"worker-{queue.replace('_', '-')}": argv for queue, argv in commands["worker"].items()
        }
        return by_role[role]
    return commands[role]


def consumed_queue(argv: list[str]) -> str:
    """Return the value of a worker command's --queues option."""
    return argv[argv.index("--queues") + 1]
