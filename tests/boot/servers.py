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
- PostgresDatabase / SqliteDatabase: a database of its own, dropped afterwards.

Choice (see broker_for): throwaway servers when their binaries exist and no TEST_*_URL is set,
otherwise the shared server at TEST_REDIS_URL / TEST_AMQP_URL (default 127.0.0.1:6379 and
127.0.0.1:5672). BOOT_REDIS=server|proxy and BOOT_RABBITMQ=node|vhost|proxy force a kind.
TEST_POSTGRES_URL names the PostgreSQL server the database is created on.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from .processes import process_tree, still_alive, tail

HOST = "127.0.0.1"
REDIS_START_SECONDS = 10
RABBIT_START_SECONDS = 30
RABBIT_STOP_SECONDS = 30
RABBITMQCTL_SECONDS = 60
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


class RedisServer:
    """A throwaway redis-server on a free port; stop() and start() keep the same port.

    persistent=True: an append-only file fsynced on every write, in its own folder, so a
    graceful restart (SIGTERM) brings back every message, as production's appendonly Redis.
    """

    def __init__(self, name: str, folder: Path, *, persistent: bool = False) -> None:
        self.name = name
        self.persistent = persistent
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
        while not _answers(self.port, b"PING\r\n", b"+PONG"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server {self.name} did not start:\n{tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        tree = process_tree(self.popen.pid)
        _stop_tree(tree, self.popen.pid, REDIS_START_SECONDS)
        self.popen.wait(timeout=5)

    def outage(self) -> None:
        self.stop()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.stop()

    def answers(self) -> bool:
        return _answers(self.port, b"PING\r\n", b"+PONG")

    def describe(self) -> str:
        kind = " (appendonly, fsync always)" if self.persistent else ""
        return f"redis-server {self.name}{kind} on {HOST}:{self.port}"

    def logs(self) -> str:
        return f"--- {self.describe()} ---\n{tail(self.log, 15)}"


class RabbitServer:
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
        self.out = self.folder / "server.out"
        if os.geteuid() == 0:
            owner = pwd.getpwnam("rabbitmq")
            for path in [self.folder, *self.folder.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
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
        with self.out.open("ab") as out:
            self.popen = subprocess.Popen(
                ["rabbitmq-server"],
                cwd=self.folder,
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + RABBIT_START_SECONDS
        while not _answers(self.port, self.AMQP_HEADER, b"\x01"):
            self.tree.update(process_tree(self.popen.pid))
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"rabbitmq-server {self.node} did not start within "
                    f"{RABBIT_START_SECONDS} s:\n{tail(self.out, 20)}"
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

    def outage(self) -> None:
        self.stop()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def answers(self) -> bool:
        return _answers(self.port, self.AMQP_HEADER, b"\x01")

    def describe(self) -> str:
        return f"throwaway rabbitmq-server {self.node} on {HOST}:{self.port}"

    def logs(self) -> str:
        return f"--- {self.describe()} ---\n{tail(self.out, 15)}"


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

    def __init__(self, base_url: str) -> None:
        self.vhost = f"boot-{suffix()}"
        parts = urlsplit(base_url)
        self.user = parts.username or "guest"
        self.base = parts
        rabbitmqctl("add_vhost", self.vhost)
        self.restore()

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


def _with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url.rstrip("/"))._replace(path=f"/{db}"))


def results_server(folder: Path) -> tuple[RedisServer | None, str]:
    """Return (the throwaway results server or None, the RESULT_BACKEND_URL)."""
    shared = os.environ.get("TEST_REDIS_URL", "").strip()
    if not shared and shutil.which("redis-server"):
        server = RedisServer("results", folder)
        server.start()
        return server, server.url(0)
    return None, _with_db(shared or DEFAULT_REDIS_URL, SHARED_REDIS_RESULTS_DB)


def redis_broker(folder: Path, *, persistent: bool = False):
    """Return the Redis broker for a boot and why this kind was chosen."""
    shared = os.environ.get("TEST_REDIS_URL", "").strip()
    kind = os.environ.get("BOOT_REDIS") or (
        "server" if not shared and shutil.which("redis-server") else "proxy"
    )
    if kind == "server":
        # Not the results server: the outage stops the broker, the results must survive it.
        server = RedisServer("broker", folder, persistent=persistent)
        server.start()
        return server, "throwaway redis-server"
    url = _with_db(shared or DEFAULT_REDIS_URL, SHARED_REDIS_BROKER_DB)
    return ProxiedBroker(url), "shared Redis, outage through the proxy"


def rabbit_broker():
    """Return the RabbitMQ broker for a boot and why this kind was chosen."""
    shared = os.environ.get("TEST_AMQP_URL", "").strip()
    kind = os.environ.get("BOOT_RABBITMQ", "")
    failure = ""
    if kind == "node" or (not kind and not shared and shutil.which("rabbitmq-server")):
        server = RabbitServer()
        try:
            server.start()
        except AssertionError as error:
            server.close()
            if kind == "node":
                raise
            failure = f" (the throwaway node failed: {error})"
        else:
            return server, "throwaway rabbitmq-server node"
    if kind == "vhost" or (not kind and not shared and shutil.which("rabbitmqctl")):
        return SharedRabbitVhost(
            shared or DEFAULT_AMQP_URL
        ), "vhost on the shared RabbitMQ" + failure
    return ProxiedBroker(
        shared or DEFAULT_AMQP_URL
    ), "shared RabbitMQ, outage through the proxy" + failure


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


class SqliteDatabase:
    """An SQLite file in the boot's temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "service.db"

    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
