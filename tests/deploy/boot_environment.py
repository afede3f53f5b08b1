"""Turn a role read from a deployment file into a local process, and record every change.

A container gets its environment from two places: the image (the Dockerfile's runtime ENV)
and the deployment file (compose `environment:`, Kubernetes `env`/`envFrom`). A local run
keeps both and changes only what a container gets from its own network and file system:

- service host names (postgres, redis, rabbitmq) -> 127.0.0.1: `localized`, no cluster DNS.
- server URLs (DATABASE_URL, BROKER_URL, RESULT_BACKEND_URL): only the port, when the
  machine can start servers of the test's own: a redis-server, a RabbitMQ node and a
  PostgreSQL cluster created with the user, password and vhost/database the file's URL
  names (as compose's rabbitmq and postgres services create them), so the file's
  credentials are checked for real. Otherwise (CI service containers, TEST_*_URL set) the
  boot tier's shared-server choice of tests/support/servers.py, and user, password and
  database/vhost/Redis db change too. Scheme, driver and query always stay the file's;
  Change.why names the URL parts replaced.
- WEB_BIND 0.0.0.0:8000 -> 127.0.0.1:<free port>; Flower (no FLOWER_PORT/FLOWER_ADDRESS in
  the files, so its defaults: every interface, 5555) gets FLOWER_PORT=<free port> and
  FLOWER_ADDRESS=127.0.0.1. A pod's ports are its own; here they are shared, loopback only.
- the image's ENV (Dockerfile, last stage): its WORKDIR /app is the synced project and /tmp
  the role's own folder (PATH = the venv's bin first, VIRTUAL_ENV, HOME). Not a change of
  the file, so not recorded.
- WORKER_HEARTBEAT_FILE (workers), BEAT_HEARTBEAT_FILE and BEAT_SCHEDULE_FILE (beat): unset
  in the files, so the service's /tmp/<pkg>-... defaults; here the same names in the role's
  own folder: every container has its own /tmp, two local workers would share one file.
- METRICS_PORT, METRICS_ADDRESS, METRICS_DIR (web, workers, beat): unset in the files, so
  every interface, the role's port (9101-9103) and /tmp; here a free port on 127.0.0.1 and the
  role's own folder, for the same reasons.
- probe URLs 127.0.0.1:<container port> -> 127.0.0.1:<the free port>: the same mapping.

Everything else (argv, every other variable and value) is the file's, byte for byte.
`Change` records each change made, so a test can print and check them.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from support.processes import close_all
from support.servers import (
    DEFAULT_REDIS_URL,
    HOST,
    SHARED_REDIS_BROKER_DB,
    SHARED_REDIS_RESULTS_DB,
    PostgresCluster,
    PostgresDatabase,
    RabbitServer,
    RedisServer,
    find_pg_bin,
    free_port,
    rabbit_broker,
    shared_redis_url,
    throwaway_redis,
    with_db,
)

from .commands import LOCAL_HOSTS, RoleProcess, localized

# The variables a local run may change, and why (the module docstring's table).
WHY = {
    "DATABASE_URL": "the test's PostgreSQL",
    "BROKER_URL": "the test's broker",
    "RESULT_BACKEND_URL": "the test's Redis",
    "WEB_BIND": "a free port on 127.0.0.1 for the container's port",
    "FLOWER_PORT": "a free port on 127.0.0.1 for the container's port",
    "FLOWER_ADDRESS": "loopback only (Flower's default is every interface)",
    "WORKER_HEARTBEAT_FILE": "the pod's own /tmp",
    "BEAT_HEARTBEAT_FILE": "the pod's own /tmp",
    "BEAT_SCHEDULE_FILE": "the pod's own /tmp",
    "METRICS_PORT": "a free port on 127.0.0.1 for the container's metrics port",
    "METRICS_ADDRESS": "loopback only (the service's default is every interface)",
    "METRICS_DIR": "the pod's own /tmp",
}
# URL parts a local run may replace (scheme, driver and query stay the file's).
URL_PARTS = ("hostname", "port", "username", "password", "path")
# The service's defaults for its files in /tmp (settings.py and probes.py), per role kind.
TMP_FILES = {
    "worker": {"WORKER_HEARTBEAT_FILE": "/tmp/{package}-worker.heartbeat"},
    "beat": {
        "BEAT_HEARTBEAT_FILE": "/tmp/{package}-beat.heartbeat",
        "BEAT_SCHEDULE_FILE": "/tmp/{package}-celerybeat-schedule",
    },
}
FLOWER_DEFAULT_PORT = 5555
# The service's default metrics port per role kind (entrypoints.METRICS_PORTS).
METRICS_DEFAULT_PORTS = {"web": 9101, "worker": 9102, "beat": 9103}
SECRET_NAMES = ("PASSWORD", "SECRET", "TOKEN", "AUTH")


@dataclass(frozen=True)
class Change:
    """One difference between a role as the file runs it and as the test runs it."""

    role: str
    name: str
    file_value: str
    local_value: str
    why: str

    def __str__(self) -> str:
        return (
            f"{self.role}: {self.name}: {masked(self.name, self.file_value)!r} -> "
            f"{masked(self.name, self.local_value)!r} ({self.why})"
        )


def masked(name: str, value: str) -> str:
    """Hide secrets in a report: URL passwords and the values of secret-named variables."""
    if any(word in name.upper() for word in SECRET_NAMES) and "://" not in value:
        return "***" if value else ""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)


# --- the image ---------------------------------------------------------------------------


def image_environment(project: Path) -> tuple[dict[str, str], str]:
    """Return the ENV and WORKDIR of the Dockerfile's last stage (the runtime image)."""
    text = re.sub(r"\\\n", " ", (project / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    last = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    environment, workdir = {}, "/"
    for line in lines[last + 1 :]:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                environment[key] = value
        elif keyword.upper() == "WORKDIR":
            workdir = rest.strip()
    return environment, workdir


def local_path(value: str, workdir: str, project: Path, tmp: Path) -> str:
    """Map the image's WORKDIR to the project and /tmp to the role's folder (each : part)."""

    def one(part: str) -> str:
        for inside, outside in ((workdir, project), ("/tmp", tmp)):
            if part == inside or part.startswith(inside.rstrip("/") + "/"):
                return str(outside) + part[len(inside.rstrip("/")) :]
        return part

    return ":".join(one(part) for part in value.split(":"))


def local_image_environment(project: Path, tmp: Path) -> dict[str, str]:
    """The image's environment as a local process gets it (${PATH} is the host's PATH)."""
    environment, workdir = image_environment(project)
    host_path = os.environ.get("PATH", "/usr/bin:/bin")
    local = {}
    for key, value in environment.items():
        value = value.replace("${PATH}", "\0").replace("$PATH", "\0")
        value = local_path(value, workdir, project, tmp).replace("\0", host_path)
        local[key] = value
    return local


# --- the servers -------------------------------------------------------------------------


class FileUserRabbitServer(RabbitServer):
    """A throwaway RabbitMQ node with the user, password and vhost a file's BROKER_URL names.

    As compose's rabbitmq service does (RABBITMQ_DEFAULT_USER/PASS/VHOST), the node creates
    them on its first boot, so the URL keeps its user, password and vhost: only its port moves.
    """

    def __init__(self, broker_url: str) -> None:
        super().__init__()
        parts = urlsplit(broker_url)
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        assert self.user and self.password, f"no user:password in {broker_url!r}"
        for value in (self.user, self.password, self.vhost):
            assert re.fullmatch(r"[A-Za-z0-9_./-]+", value), (
                f"{value!r}: quote it for rabbitmq.conf"
            )
        with (self.folder / "rabbitmq.conf").open("a") as config:
            config.write(
                f"default_user = {self.user}\n"
                f"default_pass = {self.password}\n"
                f"default_vhost = {self.vhost}\n"
            )

    def url(self) -> str:
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{credentials}@{HOST}:{self.port}/{quote(self.vhost, safe='')}"

    def describe(self) -> str:
        return f"{super().describe()} (user {self.user}, vhost {self.vhost})"


def file_user_rabbit(broker_url: str):
    """A node with the file's user and vhost when this machine can start one, else the boot
    tier's choice (a vhost on the shared RabbitMQ, or a proxy): then user and vhost change."""
    return rabbit_broker(
        lambda: FileUserRabbitServer(broker_url),
        "throwaway rabbitmq-server node with the file's user and vhost",
    )


def file_user_database(database_url: str):
    """A cluster with the file's user, password and database when PostgreSQL's binaries are
    here and TEST_POSTGRES_URL is not set, else a database of its own on the shared server
    (then user and name change)."""
    if not os.environ.get("TEST_POSTGRES_URL", "").strip() and find_pg_bin() is not None:
        server = PostgresCluster.from_url(database_url)
        return server, server.describe()
    database = PostgresDatabase()
    return database, f"database {database.name} on the shared PostgreSQL server"


class Servers:
    """The throwaway servers one boot points the files' URLs at (tests/support/servers.py).

    One Redis for broker and results, as compose runs it (a redis-server of its own, or the
    shared Redis's boot-tier databases 14 and 15); a RabbitMQ node with the file's user and
    vhost (else rabbit_broker()'s choice); a PostgreSQL cluster with the file's user and
    database (else a database of its own on the shared server).
    """

    def __init__(self, broker_url: str, database_url: str, folder: Path) -> None:
        self.notes: list[str] = []
        self.redis: RedisServer | None = None
        self.rabbit: Any = None
        self.database: Any = None
        try:
            self._start(broker_url, database_url, folder)
        except BaseException:
            # Whatever started before the failure is stopped: nothing outlives the test.
            self.close()
            raise

    def _start(self, broker_url: str, database_url: str, folder: Path) -> None:
        self.redis = throwaway_redis(folder, "redis")
        if self.redis is not None:
            self.notes.append(f"redis: {self.redis.describe()}")
        else:
            self.shared_redis = shared_redis_url() or DEFAULT_REDIS_URL
            self.notes.append(f"redis: shared {self.shared_redis}, databases 14 and 15")
        if urlsplit(broker_url).scheme.startswith("amqp"):
            self.rabbit, why = file_user_rabbit(broker_url)
            self.notes.append(f"rabbitmq: {self.rabbit.describe()} ({why})")
        self.database, why = file_user_database(database_url)
        self.notes.append(f"postgres: {why}")

    def url_for(self, service: str, file_url: str) -> str:
        """Return the URL of the throwaway server standing in for a compose service."""
        if service == "postgres":
            return self.database.url()
        if service == "rabbitmq":
            assert self.rabbit is not None, "a rabbitmq URL in a Redis variant's files"
            return self.rabbit.url()
        if service == "redis":
            db = int(urlsplit(file_url).path.strip("/") or 0)
            if self.redis is not None:
                return self.redis.url(db)
            return with_db(
                self.shared_redis, {0: SHARED_REDIS_BROKER_DB, 1: SHARED_REDIS_RESULTS_DB}[db]
            )
        raise AssertionError(f"no throwaway server for the service host {service!r}")

    def logs(self) -> str:
        parts = [
            server.logs()
            for server in (self.redis, self.rabbit, self.database)
            if server is not None and hasattr(server, "logs")
        ]
        return "\n".join(part for part in parts if part)

    def close(self) -> list[str]:
        """Stop and drop every server; return what failed (teardown goes on)."""
        return close_all(
            [
                ("rabbitmq", self.rabbit.close if self.rabbit is not None else None),
                ("redis", self.redis.stop if self.redis is not None else None),
                ("database", self.database.close if self.database is not None else None),
            ]
        )


def retarget(file_url: str, server_url: str) -> tuple[str, list[str]]:
    """Point a (localized) URL from a file at a server; return it and the parts replaced.

    The file's scheme (with its driver, e.g. postgresql+psycopg) and query stay; host, port,
    user, password and path (database, vhost, Redis db) become the server's.
    """
    file_parts, server_parts = urlsplit(file_url), urlsplit(server_url)
    file_base, server_base = file_parts.scheme.split("+")[0], server_parts.scheme.split("+")[0]
    assert file_base == server_base, f"{file_url!r} cannot point at {server_url!r}"
    url = urlunsplit(
        (
            file_parts.scheme,
            server_parts.netloc,
            server_parts.path,
            file_parts.query,
            file_parts.fragment,
        )
    )
    changed = [
        part for part in URL_PARTS if getattr(file_parts, part) != getattr(urlsplit(url), part)
    ]
    return url, changed


# --- one role ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A health check of a file: an exec argv or an HTTP GET, with the file's timeout."""

    kind: str  # "healthcheck" (compose), "livenessProbe", "readinessProbe", "startupProbe"
    argv: list[str] | None
    url: str | None
    timeout: float

    def describe(self) -> str:
        return f"{self.kind} " + (" ".join(self.argv) if self.argv else f"GET {self.url}")


@dataclass
class LocalRole:
    """A role ready to run here: the file's process, the local one, its probes, the changes."""

    name: str
    file_process: RoleProcess
    process: RoleProcess
    folder: Path
    ports: dict[int, int]
    probes: list[Probe] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "worker" if self.name.startswith("worker-") else self.name


def map_ports(text: str, ports: Mapping[int, int]) -> str:
    """Replace 127.0.0.1/localhost:<container port> with 127.0.0.1:<local port>."""

    def one(match: re.Match) -> str:
        port = int(match.group(2))
        return f"{HOST}:{ports[port]}" if port in ports else match.group(0)

    return re.sub(r"\b(127\.0\.0\.1|localhost):(\d+)\b", one, text)


def local_role(
    process: RoleProcess,
    *,
    project: Path,
    package: str,
    servers: Servers,
    container_ports: list[int],
    folder: Path,
) -> LocalRole:
    """Return the role as it runs here: the changes of the module docstring, nothing else."""
    tmp = folder / process.role
    tmp.mkdir(parents=True, exist_ok=True)
    ports = {port: free_port() for port in container_ports}
    if process.role == "flower":
        ports.setdefault(FLOWER_DEFAULT_PORT, free_port())
    overrides: dict[str, str] = {}
    changes: list[Change] = []
    mapped = localized(process, LOCAL_HOSTS)
    for name, value in process.env.items():
        host = urlsplit(value).hostname if "://" in value else None
        if host in LOCAL_HOSTS:
            url, parts = retarget(mapped.env[name], servers.url_for(host, value))
            overrides[name] = url
            replaced = ", ".join(dict.fromkeys(["hostname", *parts]))
            why = f"{WHY.get(name, 'a test server')}: {replaced}"
            changes.append(Change(process.role, name, value, url, why))
    if "WEB_BIND" in process.env:
        port = int(process.env["WEB_BIND"].rsplit(":", 1)[1])
        assert port in ports, f"{process.role}: WEB_BIND port {port} is not a container port"
        overrides["WEB_BIND"] = f"{HOST}:{ports[port]}"
    if process.role == "flower":
        port = int(process.env.get("FLOWER_PORT") or FLOWER_DEFAULT_PORT)
        overrides["FLOWER_PORT"] = str(ports[port])
        overrides["FLOWER_ADDRESS"] = HOST
    kind = "worker" if process.role.startswith("worker-") else process.role
    for name, default in TMP_FILES.get(kind, {}).items():
        inside = process.env.get(name) or default.format(package=package)
        overrides[name] = local_path(inside, "/nowhere", project, tmp)
    if kind in METRICS_DEFAULT_PORTS:
        port = int(process.env.get("METRICS_PORT") or METRICS_DEFAULT_PORTS[kind])
        overrides["METRICS_PORT"] = str(ports.setdefault(port, free_port()))
        overrides["METRICS_ADDRESS"] = HOST
        overrides["METRICS_DIR"] = str(tmp / "metrics")
    metrics_names = ("METRICS_PORT", "METRICS_ADDRESS", "METRICS_DIR")
    for name in (
        "WEB_BIND",
        "FLOWER_PORT",
        "FLOWER_ADDRESS",
        *TMP_FILES.get(kind, {}),
        *metrics_names,
    ):
        if name in overrides:
            before = process.env.get(name, "(unset)")
            changes.append(Change(process.role, name, before, overrides[name], WHY[name]))
    final = localized(process, LOCAL_HOSTS, overrides)
    environment = {**local_image_environment(project, tmp), **final.env}
    return LocalRole(
        name=process.role,
        file_process=process,
        process=replace(final, env=environment),
        folder=tmp,
        ports=ports,
        changes=changes,
    )
