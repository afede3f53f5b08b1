"""Boot a synced project from its compose.yaml or its kustomize build, then probe it.

run = DeployedRun.from_compose(project, folder)      # or .from_kubernetes(...)
try:
    run.boot()                      # servers, migrate (exit 0), every other role
    run.wait_until_healthy()        # every role's own probes pass
    job = run.round_trip()          # POST /jobs -> succeeded
finally:
    run.close()                     # every process killed by PID, servers dropped
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from support.processes import Process, close_all, run_to_log, tail, wait_for
from support.rendering import rendered_answers
from support.servers import HOST

from .boot_environment import LocalRole, Probe, Servers, local_role, map_ports
from .commands import (
    compose_processes,
    interpolate,
    kubernetes_processes,
    kustomize_build,
    load_compose,
    required_variables,
    workload_role,
)
from .helpers import seconds

MIGRATE_TIMEOUT = 120
HEALTHY_TIMEOUT = 90
JOB_TIMEOUT = 30
HTTP_TIMEOUT = 10
KILL_GRACE_SECONDS = 10
# A probe without its own timeout: compose's default (30 s), Kubernetes' default (1 s).
COMPOSE_PROBE_TIMEOUT = 30.0
KUBERNETES_PROBE_TIMEOUT = 1.0
KUBERNETES_PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
KUBERNETES = Path("deploy") / "kubernetes"


def compose_variables(compose: dict[str, Any]) -> dict[str, str]:
    """Values for exactly the `${VAR:?...}` variables compose.yaml requires (secrets)."""
    variables = {}
    for name in required_variables(compose):
        # Hex: safe unquoted in a URL and in rabbitmq.conf, whatever its first character.
        value = secrets.token_hex(16)
        # user:password, the format Flower reads.
        variables[name] = f"admin:{value}" if name == "FLOWER_BASIC_AUTH" else value
    return variables


def compose_ports(spec: dict[str, Any], variables: dict[str, str]) -> list[int]:
    """Return the container side of a compose service's `ports:`."""
    ports = []
    for entry in spec.get("ports") or []:
        if isinstance(entry, dict):
            ports.append(int(entry["target"]))
        else:
            ports.append(int(interpolate(str(entry), variables).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def kubernetes_secret_keys(documents: list[dict[str, Any]]) -> set[str]:
    """Return every Secret key a workload of the build reads (secretKeyRef)."""
    keys = set()
    for document in documents:
        if document["kind"] not in ("Deployment", "Job"):
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env") or []:
                reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
                if reference:
                    keys.add(reference["key"])
            assert not any("secretRef" in source for source in container.get("envFrom") or []), (
                "envFrom secretRef: the test cannot tell which keys the Secret needs"
            )
    return keys


def kubernetes_secret(keys: set[str], answers: dict[str, Any]) -> dict[str, str]:
    """The Secret an operator creates (deploy/kubernetes/README.md), with cluster host names.

    The URLs name the in-cluster services as compose does (postgres, redis, rabbitmq on their
    standard ports); the boot maps them exactly like compose's URLs.
    """
    name = answers["package_name"]
    broker = (
        f"amqp://{name}:{secrets.token_hex(16)}@rabbitmq:5672/{name}"
        if answers["broker"] == "rabbitmq"
        else "redis://redis:6379/0"
    )
    known = {
        "DATABASE_URL": f"postgresql+psycopg://{name}:{secrets.token_hex(16)}@postgres:5432/{name}",
        "BROKER_URL": broker,
        "RESULT_BACKEND_URL": "redis://redis:6379/1",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DIAGNOSTICS_TOKEN": secrets.token_urlsafe(32),
        "FLOWER_BASIC_AUTH": f"admin:{secrets.token_hex(16)}",
    }
    unknown = keys - set(known)
    assert not unknown, f"the manifests read Secret keys the test does not know: {unknown}"
    return {key: known[key] for key in sorted(keys)}


def kubernetes_documents(project: Path, answers: dict[str, Any]) -> list[dict[str, Any]]:
    """Build overlays/dev, with components/flower and flower-ingress when the variant has Flower.

    flower-ingress sets FLOWER_URL_PREFIX and moves Flower's probes under it: booted here, the
    probes prove Flower serves /healthcheck under the prefix.
    """
    overlay = project / KUBERNETES / "overlays" / "dev"
    if not answers["use_flower"]:
        return kustomize_build(overlay)
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    listed = list(kustomization.get("components") or [])
    for name in ("../../components/flower", "../../components/flower-ingress"):
        if name not in listed:
            listed.append(name)
    kustomization["components"] = listed
    # A sibling of dev in the test's copy of the project: the same relative paths.
    copy = overlay.parent / "dev-with-flower"
    copy.mkdir(exist_ok=True)
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return kustomize_build(copy)


@dataclass
class DeployedRun:
    """One boot of a project from one deployment file: its roles, servers and processes."""

    source: str  # "compose.yaml" or "kustomize build overlays/dev"
    project: Path
    folder: Path
    answers: dict[str, Any]
    roles_from_file: dict[str, Any]  # role -> RoleProcess as the file defines it
    ports_from_file: dict[str, list[int]]
    probes_from_file: dict[str, list[dict[str, Any]]]  # role -> raw probe specs
    servers: Servers | None = None
    roles: dict[str, LocalRole] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    migrate_exit: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # --- reading the files -----------------------------------------------------------------

    @classmethod
    def from_compose(cls, project: Path, folder: Path) -> DeployedRun:
        compose = load_compose(project)
        variables = compose_variables(compose)
        processes = compose_processes(project, variables)
        services = compose["services"]
        probes = {}
        for role in processes:
            healthcheck = services[role].get("healthcheck") or {}
            if healthcheck.get("disable"):
                continue
            probes[role] = [
                {
                    "kind": "healthcheck",
                    "exec": processes[role].probe,
                    "timeout": seconds(healthcheck.get("timeout"), COMPOSE_PROBE_TIMEOUT),
                }
            ]
        return cls(
            source="compose.yaml",
            project=project,
            folder=folder,
            answers=rendered_answers(project),
            roles_from_file=processes,
            ports_from_file={role: compose_ports(services[role], variables) for role in processes},
            probes_from_file=probes,
        )

    @classmethod
    def from_kubernetes(cls, project: Path, folder: Path) -> DeployedRun:
        answers = rendered_answers(project)
        documents = kubernetes_documents(project, answers)
        secret = kubernetes_secret(kubernetes_secret_keys(documents), answers)
        processes = kubernetes_processes(documents, secret)
        ports, probes = {}, {}
        for document in documents:
            if document["kind"] not in ("Deployment", "Job"):
                continue
            role = workload_role(document)
            (container,) = document["spec"]["template"]["spec"]["containers"]
            named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
            ports[role] = sorted(named.values())
            probes[role] = []
            for kind in KUBERNETES_PROBES:
                spec = container.get(kind)
                if not spec:
                    continue
                timeout = float(spec.get("timeoutSeconds", KUBERNETES_PROBE_TIMEOUT))
                if "exec" in spec:
                    probes[role].append(
                        {"kind": kind, "exec": list(spec["exec"]["command"]), "timeout": timeout}
                    )
                elif "httpGet" in spec:
                    get = spec["httpGet"]
                    port = named.get(get["port"], get["port"])
                    assert get.get("scheme", "HTTP") == "HTTP", f"{role} {kind}: {get}"
                    probes[role].append(
                        {"kind": kind, "http": (int(port), get["path"]), "timeout": timeout}
                    )
                else:
                    raise AssertionError(f"{role} {kind}: unsupported probe {spec}")
        return cls(
            source="kustomize build overlays/dev",
            project=project,
            folder=folder,
            answers=answers,
            roles_from_file=processes,
            ports_from_file=ports,
            probes_from_file=probes,
        )

    # --- boot ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Start the servers and derive each role's local process and probes."""
        started = time.monotonic()
        broker_urls = {
            p.env["BROKER_URL"] for p in self.roles_from_file.values() if "BROKER_URL" in p.env
        }
        assert len(broker_urls) == 1, f"the roles of {self.source} disagree on BROKER_URL"
        database_urls = {
            p.env["DATABASE_URL"] for p in self.roles_from_file.values() if "DATABASE_URL" in p.env
        }
        assert len(database_urls) == 1, f"the roles of {self.source} disagree on DATABASE_URL"
        self.servers = Servers(broker_urls.pop(), database_urls.pop(), self.folder)
        self.timings["servers"] = round(time.monotonic() - started, 1)
        for role, process in self.roles_from_file.items():
            local = local_role(
                process,
                project=self.project,
                package=self.answers["package_name"],
                servers=self.servers,
                container_ports=self.ports_from_file.get(role, []),
                folder=self.folder / "roles",
            )
            for spec in self.probes_from_file.get(role, []):
                if "exec" in spec:
                    argv = [map_ports(part, local.ports) for part in spec["exec"]]
                    local.probes.append(Probe(spec["kind"], argv, None, spec["timeout"]))
                else:
                    port, path = spec["http"]
                    url = f"http://{HOST}:{local.ports[port]}{path}"
                    local.probes.append(Probe(spec["kind"], None, url, spec["timeout"]))
            self.roles[role] = local

    def migrate(self) -> None:
        """Run the one-off migrate role; it must exit 0."""
        role = self.roles["migrate"]
        log = self.folder / "migrate.log"
        started = time.monotonic()
        code = run_to_log(
            role.process.argv,
            cwd=self.project,
            env=role.process.env,
            log=log,
            timeout=MIGRATE_TIMEOUT,
        )
        if code is None:
            raise AssertionError(
                self.report(f"migrate ({self.source}) ran longer than {MIGRATE_TIMEOUT} s")
            )
        self.migrate_exit = code
        self.timings["migrate"] = round(time.monotonic() - started, 1)
        assert code == 0, self.report(f"migrate ({self.source}) exited {code}:\n{tail(log)}")

    def start_roles(self) -> None:
        """Start every long-running role (all but migrate) with its argv and environment."""
        for name, role in self.roles.items():
            if name == "migrate":
                continue
            process = Process(
                name=name,
                argv=list(role.process.argv),
                env=role.process.env,
                cwd=self.project,
                log=self.folder / f"{name}.log",
                grace_seconds=KILL_GRACE_SECONDS,
            )
            self.processes[name] = process
            process.start()

    def boot(self) -> None:
        self.prepare()
        self.migrate()
        self.start_roles()

    # --- checks --------------------------------------------------------------------------

    def run_probe(self, role: LocalRole, probe: Probe) -> tuple[bool, str]:
        """Run one probe as the file defines it; return (passed, what it said)."""
        if probe.argv is not None:
            try:
                completed = subprocess.run(
                    probe.argv,
                    cwd=self.project,
                    env=role.process.env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=probe.timeout,
                )
            except subprocess.TimeoutExpired:
                return False, f"timed out after {probe.timeout:g} s"
            output = (completed.stdout + completed.stderr).strip()[-300:]
            return completed.returncode == 0, f"exit {completed.returncode} {output}"
        try:
            response = requests.get(probe.url, timeout=probe.timeout)
        except requests.RequestException as error:
            return False, f"{type(error).__name__}: {error}"
        # Kubernetes: any status from 200 to 399 passes.
        return 200 <= response.status_code < 400, f"HTTP {response.status_code}"

    def probe_results(self) -> dict[str, tuple[bool, str]]:
        """Run every probe of every role once: {"role probe": (passed, output)}."""
        results = {}
        for name, role in self.roles.items():
            for probe in role.probes:
                results[f"{name}: {probe.describe()}"] = self.run_probe(role, probe)
        return results

    def dead(self) -> str | None:
        for process in self.processes.values():
            if process.popen is not None and not process.alive():
                return f"{process.name} exited with code {process.popen.returncode}"
        return None

    def wait_until_healthy(self) -> dict[str, tuple[bool, str]]:
        """Poll until every probe of every role passes (the files' start periods)."""
        started = time.monotonic()

        def healthy():
            results = self.probe_results()
            failing = {key: value for key, value in results.items() if not value[0]}
            if failing:
                raise AssertionError(f"failing: {failing}")
            return results

        results = wait_for(
            healthy,
            timeout=HEALTHY_TIMEOUT,
            what=f"the probes of {self.source} did not all pass",
            report=self.report,
            interval=1.0,
            guard=self.dead,
        )
        self.timings["healthy"] = round(time.monotonic() - started, 1)
        for process in self.processes.values():
            process.remember_tree()
        return results

    @property
    def web_url(self) -> str:
        role = self.roles["web"]
        bind = role.process.env["WEB_BIND"]
        return f"http://{bind}"

    def round_trip(self) -> dict[str, Any]:
        """POST /jobs; wait until a worker settles it; return the job."""
        started = time.monotonic()
        created = requests.post(
            f"{self.web_url}/jobs", json={"name": "deploy-boot", "duration": 0.2}, timeout=10
        )
        assert created.status_code == 202, self.report(
            f"POST /jobs: {created.status_code} {created.text[:500]}"
        )
        job_id = created.json()["id"]

        def settled():
            job = requests.get(f"{self.web_url}/jobs/{job_id}", timeout=HTTP_TIMEOUT).json()
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        job = wait_for(
            settled,
            timeout=JOB_TIMEOUT,
            what=f"job {job_id} was not settled",
            report=self.report,
            guard=self.dead,
        )
        self.timings["round trip"] = round(time.monotonic() - started, 1)
        return job

    # --- failure output and teardown -----------------------------------------------------

    def changes(self) -> list[str]:
        return [str(change) for role in self.roles.values() for change in role.changes]

    def report(self, headline: str = "") -> str:
        parts = [headline, f"== {self.source} of {self.project} (logs in {self.folder})"]
        parts += self.servers.notes if self.servers else []
        parts.append("changes from the file:\n  " + "\n  ".join(self.changes()))
        migrate_log = self.folder / "migrate.log"
        if migrate_log.exists():
            parts.append(f"--- migrate (exit {self.migrate_exit}) ---\n{tail(migrate_log, 15)}")
        for process in self.processes.values():
            parts.append(f"--- {process.describe()} ---\n{tail(process.log)}")
        if self.servers is not None:
            parts.append(self.servers.logs())
        return "\n".join(part for part in parts if part)

    def close(self) -> None:
        """Kill every process by PID (its group and recorded children), then the servers."""
        errors = close_all([(p.name, p.kill) for p in self.processes.values()])
        if self.servers is not None:
            errors += self.servers.close()
        if errors:
            raise AssertionError("teardown failed:\n" + "\n".join(errors))
