"""The servers a booted variant talks to, each of its own, all on 127.0.0.1.

Every broker has the same interface: url(), outage(), restore(), close(), describe(), logs().

- RedisServer: a throwaway `redis-server` (no persistence) on a free port. The Redis broker
  and the result backend are two separate ones, so stopping the broker keeps the results.
- RabbitServer: a throwaway `rabbitmq-server` node on free ports (its own node name, data and
  log folders, no plugins), stopped and started again for the broker outage.
- SharedRabbitVhost: a vhost of its own on the machine's RabbitMQ (rabbitmqctl); the outage
  clears guest's permissions and closes the vhost's connections (the server stays up).
- ProxiedBroker: a broker nobody may stop (a CI service container) reached through a TCP
  proxy of the test's own; the outage closes the proxy's port and every connection through it.
- PostgresDatabase: a database of its own on the shared PostgreSQL server, dropped afterwards.
- PostgresCluster: a PostgreSQL cluster of its own (initdb, pg_ctl) that may be stopped.
- SqliteDatabase: an SQLite file.

Choice (redis_broker, rabbit_broker, results_server): throwaway servers when their binaries
exist and no TEST_*_URL is set, otherwise the shared server at TEST_REDIS_URL / TEST_AMQP_URL
(default 127.0.0.1:6379 and 127.0.0.1:5672). BOOT_REDIS=server|proxy and
BOOT_RABBITMQ=node|vhost|proxy force a kind. TEST_POSTGRES_URL names the PostgreSQL server
the database is created on.

Standard library only at import (psycopg is imported where a database is made): the
benchmarks import it with a rendered service's interpreter.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from .processes import process_tree, still_alive, tail

HOST = "127.0.0.1"
REDIS_START_SECONDS = 10
RABBIT_START_SECONDS = 30
RABBIT_STOP_SECONDS = 30
RABBITMQCTL_SECONDS = 60
PG_COMMAND_SECONDS = 60
PG_STOP_SECONDS = 30
# FAULTS_PG_BIN names the folder of initdb/pg_ctl; else the newest /usr/lib/postgresql/*/bin.
PG_BIN_ENV = "FAULTS_PG_BIN"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
# Databases of a shared Redis the boot tier uses: the broker's and the results'.
SHARED_REDIS_BROKER_DB = 14
SHARED_REDIS_RESULTS_DB = 15
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def suffix() -> str:
    return secrets.token_hex(4)


def _answers(port: int, payload: bytes, expect: bytes, timeout: float = 1.0) -> bool:
    """Connect, send payload and check the reply starts with `expect`."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as connection:
            connection.sendall(payload)
            return connection.recv(16).startswith(expect)
    except OSError:
        return False


def _stop_tree(tree: dict[int, int], first: int, seconds: float) -> list[int]:
    """SIGTERM `first`, wait for every PID of `tree` to exit, SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(first, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while still_alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    stubborn = still_alive(tree)
    for pid in stubborn:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stubborn


def _run_as(owner: str | None) -> list[str]:
    """The prefix that runs a server command as `owner` when the tests run as root."""
    return ["runuser", "-u", owner, "--"] if owner and os.geteuid() == 0 else []


def _give_to(owner: str, *paths: Path) -> None:
    """Hand folders and files to the user a server runs as (only when the tests run as root)."""
    if os.geteuid() == 0:
        account = pwd.getpwnam(owner)
        for path in paths:
            os.chown(path, account.pw_uid, account.pw_gid)


class ThrowawayServer:
    """A server process of the test's own: the outage stops it, restore() starts it again."""

    log: Path

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def outage(self) -> None:
        self.stop()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.stop()

    def logs(self) -> str:
        return f"--- {self.describe()} ---\n{tail(self.log, 15)}"


class RedisServer(ThrowawayServer):
    """A throwaway redis-server on a free port; stop() and start() keep the same port.

    persistent=True: an append-only file fsynced on every write, in its own folder, so a
    graceful restart (SIGTERM) brings back every message, as production's appendonly Redis.
    """

    def __init__(
        self, name: str, folder: Path, *, persistent: bool = False, databases: int = 16
    ) -> None:
        self.name = name
        self.persistent = persistent
        self.databases = databases
        self.port = free_port()
        self.folder = folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "redis.log"
        self.popen: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--databases", str(self.databases),
            *(
                ("--appendonly", "yes", "--appendfsync", "always")
                if self.persistent
                else ("--appendonly", "no")
            ),
            "--dir", str(self.folder),
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not self.answers():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server {self.name} did not start:\n{tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        tree = process_tree(self.popen.pid)
        _stop_tree(tree, self.popen.pid, REDIS_START_SECONDS)
        self.popen.wait(timeout=5)

    def answers(self) -> bool:
        return _answers(self.port, b"PING\r\n", b"+PONG")

    def describe(self) -> str:
        kind = " (appendonly, fsync always)" if self.persistent else ""
        return f"redis-server {self.name}{kind} on {HOST}:{self.port}"


class RabbitServer(ThrowawayServer):
    """A throwaway RabbitMQ node: own name, ports, data and logs, no plugins.

    Started through /usr/sbin/rabbitmq-server, which switches to the rabbitmq user when run
    as root, so its folder belongs to that user. Stopped with SIGTERM to beam.smp (Erlang's
    graceful stop); its data survives a stop, so start() brings the same queues back.
    """

    AMQP_HEADER = b"AMQP\x00\x00\x09\x01"

    def __init__(self) -> None:
        self.node = f"boot-{suffix()}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        # Not under pytest's tmp folder: that one is private to root, and the node runs as
        # the rabbitmq user.
        self.folder = Path(tempfile.mkdtemp(prefix="boot-rabbitmq-"))
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq.conf").write_text(f"listeners.tcp.local = {HOST}:{self.port}\n")
        self.log = self.folder / "server.out"
        _give_to("rabbitmq", self.folder, *self.folder.iterdir())
        self.folder.chmod(0o755)
        self.popen: subprocess.Popen | None = None
        self.tree: dict[int, int] = {}

    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}//"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_PID_FILE": str(self.folder / "node.pid"),
            "ERL_CRASH_DUMP": str(self.folder / "erl_crash.dump"),
        }

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                ["rabbitmq-server"],
                cwd=self.folder,
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + RABBIT_START_SECONDS
        while not self.answers():
            self.tree.update(process_tree(self.popen.pid))
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"rabbitmq-server {self.node} did not start within "
                    f"{RABBIT_START_SECONDS} s:\n{tail(self.log, 20)}"
                )
            time.sleep(0.2)
        self.tree.update(process_tree(self.popen.pid))

    def _beam(self) -> int | None:
        for pid in still_alive(self.tree):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith("beam"):
                    return pid
            except FileNotFoundError:
                continue
        return None

    def stop(self) -> None:
        if self.popen is None:
            return
        self.tree.update(process_tree(self.popen.pid))
        beam = self._beam()
        if beam is not None:
            _stop_tree(self.tree, beam, RABBIT_STOP_SECONDS)
        _stop_tree(self.tree, self.popen.pid, 5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self.tree = {}

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def answers(self) -> bool:
        return _answers(self.port, self.AMQP_HEADER, b"\x01")

    def describe(self) -> str:
        return f"throwaway rabbitmq-server {self.node} on {HOST}:{self.port}"


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=RABBITMQCTL_SECONDS
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"rabbitmqctl {' '.join(args)} failed ({completed.returncode}):\n"
            f"{completed.stdout}{completed.stderr}"
        )
    return completed


class SharedRabbitVhost:
    """A vhost of its own on the machine's RabbitMQ; the outage takes guest's access away.

    The shared server must not be stopped, so the outage is: clear the user's permissions on
    the vhost (new connections are refused) and close the vhost's open connections.
    """

    def __init__(self, base_url: str = DEFAULT_AMQP_URL, *, prefix: str = "boot") -> None:
        self.vhost = f"{prefix}-{suffix()}"
        parts = urlsplit(base_url)
        self.user = parts.username or "guest"
        self.base = parts
        rabbitmqctl("add_vhost", self.vhost)
        try:
            self.restore()
        except BaseException:
            self.close()
            raise

    def url(self) -> str:
        return urlunsplit(self.base._replace(path="/" + quote(self.vhost, safe="")))

    def outage(self) -> None:
        rabbitmqctl("clear_permissions", "-p", self.vhost, self.user)
        rabbitmqctl("close_all_connections", "-p", self.vhost, "boot tier: broker outage")

    def restore(self) -> None:
        rabbitmqctl("set_permissions", "-p", self.vhost, self.user, ".*", ".*", ".*")

    def close(self) -> None:
        rabbitmqctl("delete_vhost", self.vhost)

    def answers(self) -> bool:
        return True

    def describe(self) -> str:
        return f"vhost {self.vhost} on the shared RabbitMQ {self.base.hostname}:{self.base.port}"

    def logs(self) -> str:
        return f"--- {self.describe()} ---"


class TcpProxy:
    """Forward 127.0.0.1:<port> to an upstream server; stop() is an outage, start() ends it."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self.running.set()
        self.thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self.thread.start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self.running.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    client.close()
                    continue
                client.settimeout(None)
                server.settimeout(None)
                with self.lock:
                    self.sockets.update((client, server))
                for source, target in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Close the port and cut every forwarded connection, as a dead broker would."""
        self.running.clear()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with self.lock:
            cut, self.sockets = self.sockets, set()
        for end in cut:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class ProxiedBroker:
    """A shared broker (not ours to stop) behind a TcpProxy; the outage stops the proxy."""

    def __init__(self, url: str) -> None:
        self.upstream = urlsplit(url)
        default_port = 6379 if self.upstream.scheme == "redis" else 5672
        self.proxy = TcpProxy(self.upstream.hostname or HOST, self.upstream.port or default_port)
        self.proxy.start()

    def url(self) -> str:
        netloc = f"{HOST}:{self.proxy.port}"
        if self.upstream.username:
            password = f":{self.upstream.password}" if self.upstream.password else ""
            netloc = f"{self.upstream.username}{password}@{netloc}"
        return urlunsplit(self.upstream._replace(netloc=netloc))

    def outage(self) -> None:
        self.proxy.stop()

    def restore(self) -> None:
        self.proxy.start()

    def close(self) -> None:
        self.proxy.stop()

    def describe(self) -> str:
        host = f"{self.upstream.hostname}:{self.upstream.port}"
        return f"proxy {HOST}:{self.proxy.port} to the shared broker {host}{self.upstream.path}"

    def logs(self) -> str:
        return f"--- {self.describe()} ---"


# --- choosing a server ---------------------------------------------------------------------


def shared_redis_url() -> str:
    """Return TEST_REDIS_URL, or "" when none is set."""
    return os.environ.get("TEST_REDIS_URL", "").strip()


def with_db(url: str, db: int) -> str:
    """Return a Redis URL with another database number."""
    return urlunsplit(urlsplit(url.rstrip("/"))._replace(path=f"/{db}"))


def throwaway_redis(folder: Path, name: str) -> RedisServer | None:
    """A started redis-server of its own, or None when TEST_REDIS_URL or no binary says shared."""
    if shared_redis_url() or not shutil.which("redis-server"):
        return None
    server = RedisServer(name, folder)
    server.start()
    return server


def results_server(folder: Path) -> tuple[RedisServer | None, str]:
    """Return (the throwaway results server or None, the RESULT_BACKEND_URL)."""
    server = throwaway_redis(folder, "results")
    if server is not None:
        return server, server.url(0)
    return None, with_db(shared_redis_url() or DEFAULT_REDIS_URL, SHARED_REDIS_RESULTS_DB)


def redis_broker(folder: Path, *, persistent: bool = False):
    """Return the Redis broker for a boot and why this kind was chosen."""
    shared = shared_redis_url()
    kind = os.environ.get("BOOT_REDIS") or (
        "server" if not shared and shutil.which("redis-server") else "proxy"
    )
    if kind == "server":
        # Not the results server: the outage stops the broker, the results must survive it.
        server = RedisServer("broker", folder, persistent=persistent)
        server.start()
        return server, "throwaway redis-server"
    url = with_db(shared or DEFAULT_REDIS_URL, SHARED_REDIS_BROKER_DB)
    return ProxiedBroker(url), "shared Redis, outage through the proxy"


def rabbit_broker(
    node: Callable[[], RabbitServer] = RabbitServer, why: str = "throwaway rabbitmq-server node"
):
    """Return the RabbitMQ broker for a boot and why this kind was chosen.

    `node` makes the throwaway node (with the file's user and vhost, for the deploy tier).
    """
    shared = os.environ.get("TEST_AMQP_URL", "").strip()
    kind = os.environ.get("BOOT_RABBITMQ", "")
    failure = ""
    if kind == "node" or (not kind and not shared and shutil.which("rabbitmq-server")):
        server = node()
        try:
            server.start()
        except AssertionError as error:
            server.close()
            if kind == "node":
                raise
            failure = f" (the throwaway node failed: {error})"
        else:
            return server, why
    if kind == "vhost" or (not kind and not shared and shutil.which("rabbitmqctl")):
        return SharedRabbitVhost(
            shared or DEFAULT_AMQP_URL
        ), "vhost on the shared RabbitMQ" + failure
    return ProxiedBroker(
        shared or DEFAULT_AMQP_URL
    ), "shared RabbitMQ, outage through the proxy" + failure


# --- databases -----------------------------------------------------------------------------


class PostgresDatabase:
    """A database of its own on the PostgreSQL server, dropped (FORCE) afterwards."""

    def __init__(self) -> None:
        import psycopg

        self.admin_url = os.environ.get("TEST_POSTGRES_URL", "").strip() or DEFAULT_POSTGRES_URL
        self.name = f"boot_{suffix()}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'CREATE DATABASE "{self.name}"')

    def url(self) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(scheme="postgresql+psycopg", path=f"/{self.name}"))

    def close(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def find_pg_bin() -> Path | None:
    """Return the folder holding initdb and pg_ctl, or None."""
    configured = os.environ.get(PG_BIN_ENV, "").strip()
    candidates = [configured] if configured else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    which = shutil.which("initdb")
    if which and shutil.which("pg_ctl"):
        return Path(which).parent
    return None


class PostgresCluster(ThrowawayServer):
    """A PostgreSQL cluster of its own on 127.0.0.1, with one database; it may be stopped.

    The machine's shared cluster serves other work and must never be stopped, so a database
    outage needs a server of its own: `initdb` a data folder under /tmp, `pg_ctl start` it on a
    free port (loopback only, Unix socket in the same folder), create one database.
    Without a password: trust authentication, user postgres. With one (as compose's postgres
    service creates POSTGRES_USER/PASSWORD/DB): that user as superuser and scram-sha-256 on
    127.0.0.1, so a file's credentials are checked for real. `outage()` is `pg_ctl stop -m
    fast` (every backend is terminated, new connections are refused), `restore()` starts it
    again with the same data. Run as root, every server command runs as the `postgres` user
    (PostgreSQL refuses to run as root), which is why the folder is under /tmp and owned by
    that user. `close()` stops it (`-m immediate`), then SIGKILLs the postmaster by the PID in
    its `postmaster.pid` if it is still there, and removes the folder.
    """

    def __init__(self, *, user: str = "postgres", password: str = "", name: str = "") -> None:
        found = find_pg_bin()
        if found is None:
            raise AssertionError(
                "a PostgreSQL cluster of the test's own needs PostgreSQL's server binaries "
                f"(initdb, pg_ctl): install postgresql or set {PG_BIN_ENV} to their folder"
            )
        self.bin = found
        self.user, self.password = user, password
        self.name = name or f"cluster_{suffix()}"
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.as_user = _run_as("postgres")
        _give_to("postgres", self.folder)
        self.folder.chmod(0o755)
        try:
            self._initdb()
            self.start()
            self._admin(f'CREATE DATABASE "{self.name}"', database="postgres")
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, database_url: str) -> PostgresCluster:
        """A cluster with the user, password and database a DATABASE_URL names."""
        parts = urlsplit(database_url)
        user, password = parts.username or "", parts.password or ""
        name = parts.path.lstrip("/")
        assert user and password and name, f"incomplete {database_url!r}"
        return cls(user=unquote(user), password=unquote(password), name=unquote(name))

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        completed = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=PG_COMMAND_SECONDS,
            cwd=self.folder,
        )
        if completed.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({completed.returncode}):\n"
                f"{completed.stdout}{completed.stderr}\n{tail(self.log, 20)}"
            )
        return completed

    def _initdb(self) -> None:
        common = ["-D", str(self.data), "-U", self.user, "-E", "UTF8", "--no-sync"]
        if not self.password:
            self._run("initdb", *common, "-A", "trust")
            return
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        _give_to("postgres", password_file)
        try:
            self._run(
                "initdb", *common, "--pwfile", str(password_file),
                "--auth-local", "trust", "--auth-host", "scram-sha-256",
            )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)

    def _admin(self, sql: str, *, database: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def dsn(self, database: str | None = None) -> str:
        """Return a libpq URL (psycopg) of the database, or of another one on the cluster."""
        credentials = quote(self.user, safe="")
        if self.password:
            credentials += ":" + quote(self.password, safe="")
        netloc = f"{credentials}@{HOST}:{self.port}"
        return urlunsplit(("postgresql", netloc, f"/{quote(database or self.name)}", "", ""))

    def url(self) -> str:
        """Return the service's DATABASE_URL."""
        return self.dsn().replace("postgresql://", "postgresql+psycopg://", 1)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses={HOST} "
            "-c fsync=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(PG_STOP_SECONDS), "-o", options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(PG_STOP_SECONDS),
                "stop",
            )  # fmt: skip

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Stop the cluster (also after a failure), kill its postmaster by PID, drop the folder."""
        pid = self.postmaster_pid()
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.stop("immediate")
        if pid is not None:
            deadline = time.monotonic() + 5
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)

    def describe(self) -> str:
        who = f" (user {self.user}, db {self.name})" if self.password else ""
        return f"throwaway PostgreSQL cluster {self.data} on {HOST}:{self.port}{who}"


class SqliteDatabase:
    """An SQLite file in the boot's temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "service.db"

    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
