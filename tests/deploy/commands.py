"""Read each role's command line and environment out of a rendered project's deployment files.

The deploy tier compares them with the service's own definitions; test_deploy_boot.py starts them
as local processes. Roles are named like the compose services: "migrate", "web",
"worker-<queue>" (underscores become dashes), "beat", "flower".

    processes = compose_processes(project, {"SECRET_KEY": "x", ...})
    processes = kubernetes_processes(kustomize_build(overlay), secrets={"DATABASE_URL": ...})
    local = localized(processes["web"])   # postgres/redis/rabbitmq/web -> 127.0.0.1
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# The compose service names the files use as host names, and where a local run finds them.
LOCAL_HOSTS = {
    "postgres": "127.0.0.1",
    "redis": "127.0.0.1",
    "rabbitmq": "127.0.0.1",
    "web": "127.0.0.1",
}
# Kinds whose pod template runs a role of the service.
WORKLOAD_KINDS = ("Deployment", "Job")


@dataclass(frozen=True)
class RoleProcess:
    """One role as a deployment file runs it: its argv, its environment and its health check."""

    role: str
    argv: list[str]
    env: dict[str, str]
    # An exec health check (compose healthcheck or Kubernetes liveness exec), else None.
    probe: list[str] | None = None
    # An HTTP health check path (Kubernetes liveness httpGet), else None.
    probe_path: str | None = None
    source: str = field(default="", compare=False)


# --- compose -------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(KeyError):
    """A `${VAR:?message}` (or `${VAR?message}`) variable is not set."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Substitute compose variables the way `docker compose config` does."""

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("plain")
        operator, argument = match.group("op"), match.group("arg") or ""
        value = variables.get(name)
        unset_or_empty = value is None or (
            operator is not None and operator.startswith(":") and value == ""
        )
        if operator in ("-", ":-"):
            return argument if unset_or_empty else value
        if operator in ("?", ":?"):
            if unset_or_empty:
                raise MissingVariableError(f"{name}: {argument}")
            return value
        return value or ""

    return _VARIABLE.sub(substitute, text)


def required_variables(data: Any) -> dict[str, str]:
    """Return {name: message} for every `${VAR:?message}` in a compose file's values."""
    if isinstance(data, Mapping):
        return {k: v for value in data.values() for k, v in required_variables(value).items()}
    if isinstance(data, list):
        return {k: v for value in data for k, v in required_variables(value).items()}
    if not isinstance(data, str):
        return {}
    return {
        match.group("braced"): match.group("arg") or ""
        for match in _VARIABLE.finditer(data)
        if match.group("op") in ("?", ":?")
    }


def load_compose(project: Path, name: str = "compose.yaml") -> dict[str, Any]:
    """Return a compose file as data, YAML anchors and merge keys resolved, not interpolated."""
    return yaml.safe_load((project / name).read_text())


def app_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the services that run the service's image (every one built from the project)."""
    return {name: spec for name, spec in compose["services"].items() if "build" in spec}


def _environment(spec: Mapping[str, Any]) -> dict[str, str]:
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in environment)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _exec_test(healthcheck: Mapping[str, Any] | None) -> list[str] | None:
    test = (healthcheck or {}).get("test")
    if isinstance(test, list) and test and test[0] == "CMD":
        return list(test[1:])
    return None


def compose_processes(
    project: Path, variables: Mapping[str, str], *, name: str = "compose.yaml"
) -> dict[str, RoleProcess]:
    """Return every role of compose.yaml with its argv and interpolated environment.

    variables stand for the shell environment and .env; a missing required one raises
    MissingVariableError with compose's own message.
    """
    compose = load_compose(project, name)
    processes = {}
    for service, spec in app_services(compose).items():
        environment = {
            key: interpolate(value, variables) for key, value in _environment(spec).items()
        }
        processes[service] = RoleProcess(
            role=service,
            argv=[interpolate(str(part), variables) for part in spec["command"]],
            env=environment,
            probe=_exec_test(spec.get("healthcheck")),
            source=f"{name}: services.{service}",
        )
    return processes


# --- Kubernetes ----------------------------------------------------------------------------


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """Run `kubectl kustomize` on a kustomization directory and return its objects."""
    completed = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    if completed.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{completed.stderr}")
    return [document for document in yaml.safe_load_all(completed.stdout) if document]


def _config_maps(documents: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        document["metadata"]["name"]: {
            key: str(value) for key, value in (document.get("data") or {}).items()
        }
        for document in documents
        if document["kind"] == "ConfigMap"
    }


def _container_environment(
    container: Mapping[str, Any],
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, str],
) -> dict[str, str]:
    environment: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        reference = source.get("configMapRef") or source.get("secretRef")
        values = config_maps if "configMapRef" in source else {reference["name"]: secrets}
        if reference["name"] not in values:
            raise KeyError(f"envFrom names {reference['name']!r}, which the build does not contain")
        environment.update(values[reference["name"]])
    for variable in container.get("env") or []:
        name = variable["name"]
        if "value" in variable:
            environment[name] = str(variable["value"])
            continue
        value_from = variable.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            reference, values = value_from["secretKeyRef"], secrets
        elif "configMapKeyRef" in value_from:
            reference = value_from["configMapKeyRef"]
            values = config_maps.get(reference["name"], {})
        else:
            raise ValueError(f"env {name}: unsupported source {value_from}")
        if reference["key"] in values:
            environment[name] = values[reference["key"]]
        elif not reference.get("optional", False):
            raise KeyError(f"env {name} needs key {reference['key']!r} of {reference['name']!r}")
    return environment


def workload_role(document: Mapping[str, Any]) -> str:
    """Name a Deployment or Job after its role: its name without the `<slug>-` prefix."""
    slug = document["metadata"]["labels"]["app.kubernetes.io/name"]
    return document["metadata"]["name"].removeprefix(f"{slug}-")


def kubernetes_processes(
    documents: list[dict[str, Any]], secrets: Mapping[str, str]
) -> dict[str, RoleProcess]:
    """Return every role of a kustomize build with its argv and resolved environment.

    secrets stands for the Secret the manifests reference (key -> value); a missing key that
    is not optional raises KeyError.
    """
    config_maps = _config_maps(documents)
    processes = {}
    for document in documents:
        if document["kind"] not in WORKLOAD_KINDS:
            continue
        (container,) = document["spec"]["template"]["spec"]["containers"]
        liveness = container.get("livenessProbe") or {}
        role = workload_role(document)
        processes[role] = RoleProcess(
            role=role,
            argv=[*container.get("command", []), *container.get("args", [])],
            env=_container_environment(container, config_maps, secrets),
            probe=list(liveness["exec"]["command"]) if "exec" in liveness else None,
            probe_path=liveness.get("httpGet", {}).get("path"),
            source=f"{document['kind']}/{document['metadata']['name']}",
        )
    return processes


# --- running them locally ------------------------------------------------------------------


def _localize_value(value: str, hosts: Mapping[str, str]) -> str:
    if "://" in value:
        parts = urlsplit(value)
        if parts.hostname in hosts:
            userinfo, at, hostport = parts.netloc.rpartition("@")
            port = hostport[len(parts.hostname) :]
            netloc = f"{userinfo}{at}{hosts[parts.hostname]}{port}"
            return parts._replace(netloc=netloc).geturl()
        return value
    # A bind address such as WEB_BIND=0.0.0.0:8000: listen on loopback only.
    return re.sub(r"^0\.0\.0\.0(?=:\d+$)", "127.0.0.1", value)


def localized(
    process: RoleProcess,
    hosts: Mapping[str, str] = LOCAL_HOSTS,
    overrides: Mapping[str, str] | None = None,
) -> RoleProcess:
    """Return the process with service host names mapped (default: all to 127.0.0.1).

    URL hosts in the environment are mapped, 0.0.0.0 bind addresses become 127.0.0.1, then
    overrides (e.g. a local DATABASE_URL for a SQLite path) replace whole variables.
    """
    environment = {key: _localize_value(value, hosts) for key, value in process.env.items()}
    environment.update(overrides or {})
    return replace(process, env=environment)
