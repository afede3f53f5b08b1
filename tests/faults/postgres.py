"""A throwaway PostgreSQL cluster on 127.0.0.1 that the fault tier may stop and start.

The machine's shared cluster serves other work and must never be stopped, so the database
outage needs a server of its own: `initdb` a data folder under /tmp, `pg_ctl start` it on a
free port (trust authentication, loopback only, Unix socket in the same folder), create one
database. `outage()` is `pg_ctl stop -m fast` (every backend is terminated, new connections
are refused), `restore()` starts it again with the same data. Run as root, every server
command runs as the `postgres` user (PostgreSQL refuses to run as root), which is why the
folder is under /tmp and owned by that user. `close()` stops it (`-m immediate`), then
SIGKILLs the postmaster by the PID in its `postmaster.pid` if it is still there, and removes
the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlunsplit

from boot.processes import tail
from boot.servers import HOST, free_port

PG_COMMAND_SECONDS = 60
PG_STOP_SECONDS = 30
# FAULTS_PG_BIN names the folder of initdb/pg_ctl; else the newest /usr/lib/postgresql/*/bin.
PG_BIN_ENV = "FAULTS_PG_BIN"


def pg_bin() -> Path:
    """Return the folder holding initdb and pg_ctl, or fail naming what is missing."""
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
    raise AssertionError(
        "the fault tier needs PostgreSQL's server binaries (initdb, pg_ctl) for a cluster of "
        f"its own: install postgresql or set {PG_BIN_ENV} to their folder"
    )


class PostgresCluster:
    """A cluster of its own with one database; url() and close() as the boot tier expects."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.name = f"faults_{secrets.token_hex(4)}"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.folder.chmod(0o755)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-sync",
            )  # fmt: skip
            self.start()
            self._admin(f'CREATE DATABASE "{self.name}"', database="postgres")
        except BaseException:
            self.close()
            raise

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

    def _admin(self, sql: str, *, database: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def dsn(self, database: str | None = None) -> str:
        """Return a libpq URL (psycopg) of the database, or of another one on the cluster."""
        netloc = f"postgres@{HOST}:{self.port}"
        return urlunsplit(("postgresql", netloc, f"/{database or self.name}", "", ""))

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

    def outage(self) -> None:
        self.stop("fast")

    def restore(self) -> None:
        self.start()

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
        return f"throwaway PostgreSQL cluster {self.data} on {HOST}:{self.port}"

    def logs(self) -> str:
        return f"--- {self.describe()} ---\n{tail(self.log, 15)}"
