"""The HTTP path against the stock Flask-docs pattern: POST /jobs on PostgreSQL, from outside.

Two configurations behind the same gunicorn settings (2 gthread workers x 4 threads):
GENERATED runs the service's own web command (JSON logs, metrics listener on), STOCK runs
bench_flask_stock.py (the Flask docs' Celery example plus the same Job insert). Each
configuration gets a PostgreSQL database of its own, created for the run and dropped after.
The load comes from loadgen.py, a process of its own. Three passes, configurations
interleaved within each repetition:

- saturation: 16 clients back to back, only the web running (jobs wait in the broker);
- the latency curve: fixed offered loads (fractions of the lower saturation), p50/p99
  measured from each request's scheduled time; GENERATED-QUIET (text logs,
  METRICS_ENABLED=false) runs at the middle load too: the observability cost on the HTTP path;
- end to end: every role running (web, worker, beat, Flower; GENERATED also a second Flower
  on the full worker app), N jobs posted, timed until every accepted job is settled; lost
  and duplicated side effects counted from the database; peak RSS of each role at idle and
  after the jobs. Then the same on SQLite (a database file per configuration, the service's
  SQLite settings for GENERATED, SQLAlchemy's defaults for STOCK).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness import BENCH_DIR, FLOWER_AUTH, READY_MARK, BenchError, Context, guarded, section
from support.processes import Process, process_tree, wait_for
from support.servers import HOST, free_port

STATUS_DONE = ("succeeded", "failed", "cancelled")


def percentile(values: list[float], share: float) -> float | None:
    values = sorted(values)
    if not values:
        return None
    # Nearest rank, as report.percentile: with fewer than 100 samples p99 is the maximum.
    return values[max(1, math.ceil(share * len(values))) - 1]


# --------------------------------------------------------------------------- databases


def admin_engine(base_url: str):
    from sqlalchemy import create_engine

    return create_engine(f"{base_url}postgres", isolation_level="AUTOCOMMIT")


def fresh_database(base_url: str, name: str) -> str:
    """Drop and create a database of our own; return its SQLAlchemy URL."""
    from sqlalchemy import text

    engine = admin_engine(base_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return f"{base_url}{name}"


def drop_database(base_url: str, name: str) -> None:
    from sqlalchemy import text

    engine = admin_engine(base_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def job_counts(url: str) -> dict[str, int]:
    """Jobs by status, and how many ran their side effect more than once."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT status, count(*) FROM jobs GROUP BY status"))
            counts = {status: count for status, count in rows}
            counts["duplicated"] = connection.execute(
                text("SELECT count(*) FROM jobs WHERE side_effects > 1")
            ).scalar_one()
            counts["total"] = sum(v for k, v in counts.items() if k != "duplicated")
    finally:
        engine.dispose()
    return counts


def settled_ids(url: str) -> set[int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            query = text("SELECT id FROM jobs WHERE status IN ('succeeded','failed','cancelled')")
            return {row[0] for row in connection.execute(query)}
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- configurations


class HttpConfig:
    """One configuration of the HTTP path: its roles' commands and environment."""

    def __init__(
        self, ctx: Context, name: str, broker_db: int, run_tag: str, database: str = "postgresql"
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.database = database
        self.broker_url = f"redis://{HOST}:{ctx.redis_port}/{broker_db}"
        self.results_url = f"redis://{HOST}:{ctx.redis_port}/{broker_db + 1}"
        self.db_name = f"bench_{run_tag}_{name.replace('-', '_')}"
        self.database_url = ""
        self.web_port = 0

    def flush(self) -> None:
        import redis

        for url in (self.broker_url, self.results_url):
            redis.Redis.from_url(url).flushdb()

    def sqlite_files(self) -> list[Path]:
        path = self.ctx.work / f"{self.db_name}.db"
        return [path, path.with_suffix(".db-wal"), path.with_suffix(".db-shm")]

    def prepare_database(self) -> None:
        if self.database == "sqlite":
            self.drop()
            self.database_url = f"sqlite:///{self.sqlite_files()[0]}"
        else:
            self.database_url = fresh_database(self.ctx.plan["postgres_base_url"], self.db_name)
        self.create_schema()

    def drop(self) -> None:
        if self.database == "sqlite":
            for path in self.sqlite_files():
                path.unlink(missing_ok=True)
            return
        with contextlib.suppress(Exception):
            drop_database(self.ctx.plan["postgres_base_url"], self.db_name)

    def url(self, path: str = "/jobs") -> str:
        return f"http://{HOST}:{self.web_port}{path}"


class StockHttp(HttpConfig):
    module = "bench_flask_stock"

    def env(self, rundir: Path) -> dict[str, str]:
        return self.ctx.base_env | {
            "PYTHONUNBUFFERED": "1",
            "BENCH_DATABASE_URL": self.database_url,
            "BENCH_BROKER_URL": self.broker_url,
            "BENCH_RESULT_URL": self.results_url,
            "BENCH_PACKAGE": self.ctx.plan["package"],
            "FLOWER_BASIC_AUTH": FLOWER_AUTH,
        }

    def create_schema(self) -> None:
        code = (
            "import importlib,sys; from sqlalchemy import create_engine;"
            f"importlib.import_module('{self.ctx.plan['package']}.jobs.models');"
            f"m=importlib.import_module('{self.ctx.plan['package']}.models');"
            "m.Base.metadata.create_all(create_engine(sys.argv[1]))"
        )
        subprocess.run(
            [self.ctx.bin("python"), "-c", code, self.database_url],
            check=True,
            capture_output=True,
            timeout=60,
            cwd=self.ctx.svc,
            env=self.ctx.base_env,
        )

    def web_argv(self) -> list[str]:
        # The generated web's gunicorn settings (gunicorn_conf.py defaults), on the command line.
        return [
            self.ctx.bin("gunicorn"),
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "30",
            "--graceful-timeout",
            "20",
            "--bind",
            f"{HOST}:{self.web_port}",
            f"{self.module}:app",
        ]

    def roles(self, rundir: Path) -> dict[str, list[str]]:
        app = f"{self.module}:celery_app"
        celery = self.ctx.bin("celery")
        return {
            "worker": [celery, "-A", app, "worker", "-c", "2", "--loglevel", "INFO"],
            "beat": [
                celery,
                "-A",
                app,
                "beat",
                "--loglevel",
                "INFO",
                "-s",
                str(rundir / "stock-beat-schedule"),
            ],
            "flower": [
                celery,
                "-A",
                app,
                "flower",
                f"--port={free_port()}",
                f"--address={HOST}",
            ],
        }


class GeneratedHttp(HttpConfig):
    """The service as deployed (JSON logs, metrics); QUIET: text logs, METRICS_ENABLED=false."""

    def __init__(self, *args, quiet: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.quiet = quiet

    def env(self, rundir: Path) -> dict[str, str]:
        env = self.ctx.base_env | {
            "PYTHONUNBUFFERED": "1",
            "BROKER_URL": self.broker_url,
            "RESULT_BACKEND_URL": self.results_url,
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": "bench-secret-key-bench-secret-key",
            "WEB_BIND": f"{HOST}:{self.web_port}",
            "WORKER_HEARTBEAT_FILE": str(rundir / "worker.heartbeat"),
            "BEAT_HEARTBEAT_FILE": str(rundir / "beat.heartbeat"),
            "BEAT_SCHEDULE_FILE": str(rundir / "celerybeat-schedule"),
            "FLOWER_ADDRESS": HOST,
            "FLOWER_BASIC_AUTH": FLOWER_AUTH,
            "METRICS_ADDRESS": HOST,
            "METRICS_DIR": str(rundir / "metrics"),
            "LOG_FORMAT": "text" if self.quiet else "json",
        }
        if self.quiet:
            # Observability off: no request hooks, no task signals, no listener.
            env["METRICS_ENABLED"] = "false"
        else:
            env["METRICS_PORT"] = str(free_port())  # each role of one run its own port
        return env

    def create_schema(self) -> None:
        migrate = self.ctx.commands["migrate"]
        env = self.ctx.base_env | {"DATABASE_URL": self.database_url}
        completed = subprocess.run(
            [self.ctx.bin(migrate[0]), *migrate[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.ctx.svc,
            env=env,
        )
        if completed.returncode:
            raise BenchError(f"migrate failed:\n{completed.stderr[-2000:]}")

    def web_argv(self) -> list[str]:
        web = self.ctx.commands["web"]
        return [self.ctx.bin(web[0]), *web[1:]]

    def roles(self, rundir: Path) -> dict[str, list[str]]:
        commands = self.ctx.commands
        job_queue = self.ctx.plan.get("job_queue", "jobs")
        worker = commands["worker"][job_queue]
        beat, flower = commands["beat"], commands["flower"]
        celery = self.ctx.bin("celery")
        return {
            "worker": [self.ctx.bin(worker[0]), *worker[1:]],
            "beat": [self.ctx.bin(beat[0]), *beat[1:]],
            "flower": [self.ctx.bin(flower[0]), *flower[1:]],
            # Flower on the full Flask worker app, the way cookiecutter-django runs it.
            "flower_full_app": [
                celery,
                "--app",
                commands["worker"][job_queue][2],
                "flower",
                f"--port={free_port()}",
                f"--address={HOST}",
            ],
        }

    def role_env(self, env: dict[str, str], role: str) -> dict[str, str]:
        port = {"flower": {"FLOWER_PORT": str(free_port())}}.get(role, {})
        if not self.quiet and role != "web":
            port["METRICS_PORT"] = str(free_port())
        return env | port


# --------------------------------------------------------------------------- processes


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


def start_web(ctx: Context, config: HttpConfig, rundir: Path) -> Process:
    config.web_port = free_port()
    env = config.env(rundir)
    proc = ctx.registry.start(f"http-{config.name}-web", config.web_argv(), env=env, cwd=ctx.svc)
    try:
        # GET /jobs/0 answers 404 in both without touching the database.
        wait_for(
            lambda: answers(config.url("/jobs/0")) or not proc.alive(),
            timeout=60,
            what=f"{config.name} web to answer",
            interval=0.1,
        )
    except Exception:
        ctx.registry.stop(proc)
        raise
    if not proc.alive():
        raise BenchError(f"{config.name} web exited:\n{proc.tail()}")
    return proc


def start_roles(ctx: Context, config: HttpConfig, rundir: Path) -> dict[str, Process]:
    env = config.env(rundir)
    procs: dict[str, Process] = {}
    try:
        for role, argv in config.roles(rundir).items():
            role_env = config.role_env(env, role) if hasattr(config, "role_env") else env
            procs[role] = ctx.registry.start(
                f"http-{config.name}-{role}", argv, env=role_env, cwd=ctx.svc
            )
        for role, proc in procs.items():
            wait_for(
                lambda proc=proc, role=role: not proc.alive() or role_ready(role, proc),
                timeout=60,
                what=f"{config.name} {role} to be ready",
                interval=0.1,
            )
            if not proc.alive():
                raise BenchError(f"{config.name} {role} exited:\n{proc.tail()}")
    except Exception:
        for proc in procs.values():
            ctx.registry.stop(proc)
        raise
    return procs


def role_ready(role: str, proc: Process) -> bool:
    text = proc.log_text()
    if role == "worker":
        return READY_MARK in text
    if role == "beat":
        return "beat: Starting" in text
    port = (
        next(a.split("=", 1)[1] for a in proc.argv if a.startswith("--port="))
        if any(a.startswith("--port=") for a in proc.argv)
        else proc.env.get("FLOWER_PORT")
    )
    return answers(f"http://{HOST}:{port}/healthcheck")


def memory_of(proc: Process) -> dict[str, Any]:
    """VmRSS and VmHWM (peak) in MiB of a role's main process and of its children."""

    def status(pid: int) -> dict[str, float]:
        values = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = round(int(rest.split()[0]) / 1024, 1)
        return values

    tree = process_tree(proc.pid)
    children = [pid for pid in tree if pid != proc.pid]
    return {"main": status(proc.pid), "children": [status(pid) for pid in sorted(children)]}


def load(ctx: Context, config: HttpConfig, *args: str, timeout: float) -> dict[str, Any]:
    completed = subprocess.run(
        [ctx.bin("python"), str(BENCH_DIR / "loadgen.py"), "--url", config.url(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ctx.base_env,
    )
    if completed.returncode:
        raise BenchError(f"loadgen failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


# --------------------------------------------------------------------------- passes


def saturation(
    ctx: Context, config: HttpConfig, cfg: dict, rep: int, then_rates: list[float] | None = None
) -> dict[str, Any]:
    """Closed-loop saturation; then (quick mode's single pass) fixed loads in the same boot."""
    rundir = ctx.work / f"http-sat-{config.name}-{rep}"
    rundir.mkdir(parents=True, exist_ok=True)
    config.flush()
    config.prepare_database()
    web = start_web(ctx, config, rundir)
    try:
        seconds = cfg["http"]["saturation_s"]
        # A short warm-up (connections, first imports), not counted.
        load(ctx, config, "closed", "--clients", "4", "--seconds", "1", timeout=60)
        data = load(
            ctx,
            config,
            "closed",
            "--clients",
            str(cfg["http"]["clients"]),
            "--seconds",
            str(seconds),
            timeout=seconds + 60,
        )
        memory = memory_of(web)
        points = open_loop_points(ctx, config, cfg, then_rates) if then_rates else None
    finally:
        ctx.registry.stop(web)
    samples = data["samples"]
    accepted = [s for s in samples if s[3] == 202]
    latencies = [(s[2] - s[1]) * 1000 for s in accepted]
    return {
        "requests_per_s": round(len(accepted) / seconds, 1),
        "errors": len(samples) - len(accepted),
        "p50_ms": round(percentile(latencies, 0.5) or 0, 1),
        "p99_ms": round(percentile(latencies, 0.99) or 0, 1),
        "web_memory": memory,
        "points": points,
    }


def fixed_load(ctx: Context, config: HttpConfig, cfg: dict, rep: int, rates: list[float]):
    rundir = ctx.work / f"http-curve-{config.name}-{rep}"
    rundir.mkdir(parents=True, exist_ok=True)
    config.flush()
    config.prepare_database()
    web = start_web(ctx, config, rundir)
    try:
        load(ctx, config, "closed", "--clients", "4", "--seconds", "1", timeout=60)
        return open_loop_points(ctx, config, cfg, rates)
    finally:
        ctx.registry.stop(web)


def open_loop_points(ctx: Context, config: HttpConfig, cfg: dict, rates: list[float]):
    """Each rate offered for curve_s seconds against the running web; one point each."""
    points = []
    seconds = cfg["http"]["curve_s"]
    for rate in rates:
        data = load(
            ctx,
            config,
            "open",
            "--rate",
            f"{rate:.1f}",
            "--seconds",
            str(seconds),
            "--clients",
            "32",
            timeout=seconds + 90,
        )
        samples = data["samples"]
        ok = [s for s in samples if s[3] == 202]
        from_schedule = [(s[2] - s[0]) * 1000 for s in ok]
        points.append(
            {
                "offered_per_s": round(rate, 1),
                "achieved_per_s": round(len(ok) / max(data["wall_s"], seconds), 1),
                "errors": len(samples) - len(ok),
                "p50_ms": round(percentile(from_schedule, 0.5) or 0, 1),
                "p90_ms": round(percentile(from_schedule, 0.9) or 0, 1),
                "p99_ms": round(percentile(from_schedule, 0.99) or 0, 1),
                "n": len(ok),
            }
        )
    return points


def end_to_end(ctx: Context, config: HttpConfig, cfg: dict, rep: int) -> dict[str, Any]:
    rundir = ctx.work / f"http-e2e-{config.name}-{rep}"
    rundir.mkdir(parents=True, exist_ok=True)
    config.flush()
    config.prepare_database()
    web = start_web(ctx, config, rundir)
    procs: dict[str, Process] = {}
    try:
        procs = start_roles(ctx, config, rundir)
        procs["web"] = web
        time.sleep(2.0)  # idle: every role has finished starting
        idle = {role: memory_of(proc) for role, proc in procs.items()}
        n = cfg["http"]["e2e_jobs"]
        started = time.time()
        data = load(
            ctx,
            config,
            "count",
            "--clients",
            str(cfg["http"]["clients"]),
            "--requests",
            str(n),
            timeout=600,
        )
        accepted = {s[4] for s in data["samples"] if s[3] == 202}
        posted_s = time.time() - started
        deadline = time.time() + cfg["http"]["settle_timeout_s"]
        settled: set[int] = set()
        while time.time() < deadline:
            settled = settled_ids(config.database_url)
            if accepted <= settled:
                break
            time.sleep(0.1)
        settle_s = time.time() - started
        time.sleep(1.0)  # a late duplicate would show now
        after = {role: memory_of(proc) for role, proc in procs.items()}
        counts = job_counts(config.database_url)
    finally:
        for proc in procs.values():
            ctx.registry.stop(proc)
        if web not in procs.values():
            ctx.registry.stop(web)
    return {
        "posted": len(data["samples"]),
        "accepted": len(accepted),
        "http_errors": len(data["samples"]) - len(accepted),
        "post_s": round(posted_s, 2),
        "settle_s": round(settle_s, 2),
        "jobs_per_s": round(len(accepted) / settle_s, 1),
        "lost": len(accepted - settled),
        "duplicated": counts["duplicated"],
        "rows": counts,
        "memory_idle": idle,
        "memory_after": after,
    }


def measure_curve(ctx, cfg, out, http, sat, configs) -> None:
    """The latency curve at fractions of the lower saturation median (full mode)."""
    stock, generated, quiet = configs
    medians = {}
    for name, runs in sat.items():
        values = sorted(r["requests_per_s"] for r in runs if r)
        medians[name] = values[len(values) // 2] if values else None
    known = [v for v in medians.values() if v]
    if not known:
        raise BenchError("no saturation figure: no latency curve")
    lower = min(known)
    rates = [round(lower * share, 1) for share in cfg["http"]["curve_shares"]]
    http["curve_rates"] = rates
    http["fixed_rate"] = round(lower * cfg["http"]["fixed_share"], 1)
    curve = http["curve"]
    with section("http_curve")(out):
        for rep in range(cfg["http"]["curve_reps"]):
            order = [stock, generated, quiet]
            order = order[rep % 3 :] + order[: rep % 3]
            for config in order:
                config_rates = rates if config is not quiet else [http["fixed_rate"]]
                curve[config.name].append(
                    guarded(
                        out["errors"],
                        f"http curve {config.name} {rep}",
                        fixed_load,
                        ctx,
                        config,
                        cfg,
                        rep,
                        config_rates,
                    )
                )


def measure(ctx: Context, cfg: dict, out: dict[str, Any]) -> None:
    """The three passes, configurations interleaved (the order flips every repetition)."""
    tag = f"{os.getpid()}"
    stock = StockHttp(ctx, "stock", broker_db=0, run_tag=tag)
    generated = GeneratedHttp(ctx, "generated", broker_db=2, run_tag=tag)
    quiet = GeneratedHttp(ctx, "generated-quiet", broker_db=4, run_tag=tag, quiet=True)
    # End to end on SQLite too: the same two patterns, a database file each.
    on_sqlite = [
        StockHttp(ctx, "stock-sqlite", broker_db=6, run_tag=tag, database="sqlite"),
        GeneratedHttp(ctx, "generated-sqlite", broker_db=8, run_tag=tag, database="sqlite"),
    ]
    http = out.setdefault("http", {})
    reps = cfg["http"]["reps"]
    single_rate = cfg["http"].get("single_pass_rate")
    try:
        with section("http_saturation")(out):
            sat = http.setdefault("saturation", {"stock": [], "generated": []})
            then = [float(single_rate)] if single_rate else None
            for rep in range(reps):
                for config in (stock, generated) if rep % 2 == 0 else (generated, stock):
                    sat[config.name].append(
                        guarded(
                            out["errors"],
                            f"http saturation {config.name} {rep}",
                            saturation,
                            ctx,
                            config,
                            cfg,
                            rep,
                            then,
                        )
                    )
        curve = http.setdefault("curve", {"stock": [], "generated": [], "generated-quiet": []})
        if single_rate:
            # Quick mode: the fixed load ran in the saturation boot; QUIET gets a boot of its own.
            http["fixed_rate"] = float(single_rate)
            http["curve_rates"] = [float(single_rate)]
            for name in ("stock", "generated"):
                curve[name] = [run["points"] for run in sat[name] if run and run["points"]]
            with section("http_curve")(out):
                curve["generated-quiet"].append(
                    guarded(
                        out["errors"],
                        "http curve generated-quiet 0",
                        fixed_load,
                        ctx,
                        quiet,
                        cfg,
                        0,
                        [float(single_rate)],
                    )
                )
        else:
            measure_curve(ctx, cfg, out, http, sat, (stock, generated, quiet))
        with section("http_end_to_end")(out):
            e2e = http.setdefault("end_to_end", {})
            pairs = ((stock, generated), tuple(on_sqlite))
            for rep in range(cfg["http"]["e2e_reps"]):
                for config in (c for pair in pairs for c in (pair if rep % 2 == 0 else pair[::-1])):
                    e2e.setdefault(config.name, []).append(
                        guarded(
                            out["errors"],
                            f"http end-to-end {config.name} {rep}",
                            end_to_end,
                            ctx,
                            config,
                            cfg,
                            rep,
                        )
                    )
    finally:
        for config in (stock, generated, quiet, *on_sqlite):
            config.drop()
