"""Run the benchmark scenarios inside the rendered service's venv; write raw results as JSON.

Started by run.py as `<service>/.venv/bin/python benchmarks/driver.py --plan plan.json`, so
STOCK and GENERATED use the same celery/kombu/redis-py, the service's own. Every process is
started through procs.Registry and stopped by PID, also when a scenario fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from procs import (
    LOOPBACK,
    BenchError,
    Proc,
    Registry,
    busy_percent,
    children_of,
    cpu_times,
    free_port,
    loadavg,
    steal_percent,
    wait_for,
)

BENCH_DIR = Path(__file__).resolve().parent
HOST = socket.gethostname()
TOKEN = "bench-diagnostics-token"
FLOWER_AUTH = "bench:bench-password"
# Celery logs this line when a worker consumes (both configurations log at INFO).
READY_MARK = " ready."


# --------------------------------------------------------------------------- targets


class Target:
    """How to start a worker of one configuration and how to publish to it."""

    name: str
    short_queue: str
    long_queue: str

    def __init__(self, ctx: Context, broker_url: str, events_db: int) -> None:
        self.ctx = ctx
        self.broker_url = broker_url
        self.events_url = f"redis://{LOOPBACK}:{ctx.redis_port}/{events_db}"
        self.events = redis.Redis.from_url(self.events_url)
        self._producer = None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        env["BENCH_REDIS_URL"] = self.events_url
        env.update(extra)
        return env

    def flush(self) -> None:
        """Empty the broker database and the events database of this target."""
        self.events.flushdb()
        if self.broker_url.startswith("redis://"):
            redis.Redis.from_url(self.broker_url).flushdb()

    def send(self, name: str, args: list, queue: str) -> None:
        self.producer().send_task(name, args=args, queue=queue)

    def send_many(self, name: str, args_list: list[list], queue: str) -> None:
        app = self.producer()
        with app.producer_or_acquire() as producer:
            for args in args_list:
                app.send_task(name, args=args, queue=queue, producer=producer)

    def events_list(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.events.lrange("bench:events", 0, -1)]

    def ready_count(self) -> int | None:
        """Ready messages in the short queue (RabbitMQ only; Redis: None)."""
        if self.broker_url.startswith("redis://"):
            return None
        with self.producer().connection_for_write() as connection:
            channel = connection.channel()
            try:
                return channel.queue_declare(queue=self.short_queue, passive=True).message_count
            finally:
                channel.close()

    def parked(self) -> dict[str, int] | None:
        """Messages waiting in the broker: ready in the queues, unacked (Redis only)."""
        if not self.broker_url.startswith("redis://"):
            return None
        broker = redis.Redis.from_url(self.broker_url)
        return {
            "ready": sum(broker.llen(q) for q in {self.short_queue, self.long_queue}),
            "unacked": broker.hlen("unacked"),
        }


class Stock(Target):
    name = "stock"
    short_queue = "celery"
    long_queue = "long"

    def worker_argv(self, queues: list[str] | None, hostname: str) -> list[str]:
        argv = [self.ctx.bin("celery"), "-A", "bench_stock", "worker", "-c", "2"]
        argv += ["--loglevel", "INFO", "--hostname", f"{hostname}@%h"]
        if queues:
            argv += ["--queues", ",".join(queues)]
        return argv

    def worker_env(self, **extra: str) -> dict[str, str]:
        return self.env(BENCH_BROKER_URL=self.broker_url, **extra)

    def producer(self):
        if self._producer is None:
            from celery import Celery

            self._producer = Celery("bench_stock_producer", broker=self.broker_url)
        return self._producer


class Profile(Stock):
    """Diagnostic: a plain app with the service's settings profile (bench_profile.py)."""

    name = "profile"
    short_queue = "default"
    long_queue = "jobs"

    def worker_argv(self, queues: list[str] | None, hostname: str) -> list[str]:
        argv = super().worker_argv(queues, hostname)
        argv[argv.index("bench_stock")] = "bench_profile"
        return argv

    def worker_env(self, **extra: str) -> dict[str, str]:
        return super().worker_env(BENCH_PACKAGE=self.ctx.plan["package"], **extra)

    def producer(self):
        if self._producer is None:
            import importlib

            from celery import Celery

            routing = importlib.import_module(f"{self.ctx.plan['package']}.celery_routing")
            self._producer = Celery("bench_profile_producer", broker=self.broker_url)
            self._producer.conf.update(routing.routing_settings())
        return self._producer


class Generated(Target):
    name = "generated"
    short_queue = "default"
    long_queue = "jobs"

    def __init__(self, ctx: Context, broker_url: str, events_db: int, results_db: int):
        super().__init__(ctx, broker_url, events_db)
        self.results_url = f"redis://{LOOPBACK}:{ctx.redis_port}/{results_db}"

    def worker_argv(self, queues: list[str] | None, hostname: str) -> list[str]:
        """The service's own worker command, with the benchmark's tasks included."""
        argv = list(self.ctx.commands["worker"]["default"])
        argv[0] = self.ctx.bin(argv[0])
        if queues:
            argv[argv.index("--queues") + 1] = ",".join(queues)
        argv[argv.index("--hostname") + 1] = f"{hostname}@%h"
        return [*argv, "--include", "bench_service_tasks"]

    def worker_env(self, **extra: str) -> dict[str, str]:
        return self.env(
            BROKER_URL=self.broker_url,
            RESULT_BACKEND_URL=self.results_url,
            DATABASE_URL=f"sqlite:///{self.ctx.work / 'worker.db'}",
            WORKER_HEARTBEAT_FILE=str(self.ctx.work / f"hb-{time.monotonic_ns()}"),
            **extra,
        )

    def producer(self):
        if self._producer is None:
            raise BenchError("make_generated_producer() was not called")
        return self._producer


class Context:
    """Paths, ports and the service's commands for one driver run."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.svc = Path(plan["service_dir"])
        self.work = Path(plan["work_dir"])
        self.work.mkdir(parents=True, exist_ok=True)
        self.redis_port = plan["redis_port"]
        self.venv_bin = self.svc / ".venv" / "bin"
        self.registry = Registry(self.work / "logs")
        self.base_env = {
            "PATH": f"{self.venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(BENCH_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LOG_LEVEL": "INFO",
        }
        self.commands = json.loads(
            subprocess.run(
                [self.bin("python"), "-m", f"{plan['package']}.entrypoints"],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=self.svc,
                env=self.base_env,
            ).stdout
        )

    def bin(self, name: str) -> str:
        path = self.venv_bin / name
        return str(path) if path.exists() else name


def make_generated_producer(target: Generated, package: str, time_limit: int | None) -> None:
    """Build the service's own broker-only app (the one Flower uses) as the producer."""
    import importlib

    environ = {"BROKER_URL": target.broker_url, "RESULT_BACKEND_URL": target.results_url}
    if time_limit:
        environ["TASK_TIME_LIMIT"] = str(time_limit)
    apps = importlib.import_module(f"{package}.celery_apps")
    target._producer = apps.create_broker_celery_app(environ)


# --------------------------------------------------------------------------- helpers


def start_worker(
    ctx: Context, target: Target, hostname: str, queues=None, **env: str
) -> tuple[Proc, float]:
    """Start a worker and wait until it logs that it is ready; return (proc, seconds)."""
    proc = ctx.registry.start(
        f"{target.name}-{hostname}",
        target.worker_argv(queues, hostname),
        env=target.worker_env(**env),
        cwd=ctx.svc,
    )
    try:
        wait_for(
            lambda: READY_MARK in proc.log_text() or not proc.alive(),
            60,
            f"{target.name} worker {hostname} to be ready",
        )
    except BenchError:
        ctx.registry.stop(proc)
        raise
    if not proc.alive():
        raise BenchError(f"{target.name} worker {hostname} exited:\n{proc.tail()}")
    return proc, time.time() - proc.started


def events_by_token(events: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {}
    for event in sorted(events, key=lambda e: e["t"]):
        entry = out.setdefault(event["token"], {"start": [], "end": [], "pid": []})
        entry[event["kind"]].append(event["t"])
        if event["kind"] == "start":
            entry["pid"].append(event["pid"])
    return out


def section(name: str):
    """Context manager that records load and CPU steal around a scenario."""

    @contextlib.contextmanager
    def manager(store: dict[str, Any]):
        before, load_before = cpu_times(), loadavg()
        started = time.time()
        print(f"[bench] {name} ...", flush=True)
        try:
            yield
        finally:
            after = cpu_times()
            store.setdefault("load", {})[name] = {
                "seconds": round(time.time() - started, 1),
                "steal_percent": steal_percent(before, after),
                "cpu_busy_percent": busy_percent(before, after),
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }
            print(f"[bench] {name} done in {time.time() - started:.0f} s", flush=True)

    return manager


# --------------------------------------------------------------------------- scenarios


def throughput(ctx: Context, target: Target, n: int) -> dict[str, Any]:
    """N no-op tasks queued first, then one worker (-c 2) drains them."""
    target.flush()
    t0 = time.perf_counter()
    target.send_many("bench.noop", [[n]] * n, target.short_queue)
    enqueue_s = time.perf_counter() - t0
    proc, ready_s = start_worker(ctx, target, "tp")
    try:
        wait_for(
            lambda: target.events.get("bench:last"),
            max(60.0, n / 20),
            f"{target.name} to finish {n} no-op tasks",
            0.02,
        )
        first = float(target.events.get("bench:first"))
        last = float(target.events.get("bench:last"))
    finally:
        ctx.registry.stop(proc)
    return {
        "tasks_per_s": round((n - 1) / (last - first), 1),
        "incl_startup_tasks_per_s": round(n / (last - proc.started), 1),
        "worker_ready_s": round(ready_s, 2),
        "enqueue_tasks_per_s": round(n / enqueue_s, 1),
    }


def ideal_starts(shorts, enqueued, busy_until, free_slots, durations):
    """Greedy schedule: each short (in enqueue order) takes the slot that frees first."""
    slots = list(busy_until) + [float("-inf")] * free_slots
    ideal = {}
    for token in sorted(shorts, key=lambda tok: enqueued[tok]):
        index = min(range(len(slots)), key=lambda i: slots[i])
        start = max(enqueued[token], slots[index])
        ideal[token] = start
        slots[index] = start + durations[token]
    return ideal


def head_of_line(ctx: Context, target: Target, scenario: str, cfg: dict) -> dict[str, Any]:
    """Short tasks queued while a long task holds a child (hol1) or a whole worker (hol3).

    hol1: one worker (-c 2) consumes both queues; 1 long task holds one child.
    hol3: W1 (-c 2) consumes both queues and runs 2 long tasks (both children busy);
          W2 (-c 2) consumes the short queue only and is idle.
    Extra wait of a short = its actual start - its start in a greedy schedule over the
    same free slots (the earliest moment any child could have run it).
    """
    target.flush()
    longs = 1 if scenario == "hol1" else 2
    workers = []
    try:
        w1, _ = start_worker(ctx, target, "w1", [target.short_queue, target.long_queue])
        workers.append(w1)
        if scenario == "hol3":
            w2, _ = start_worker(ctx, target, "w2", [target.short_queue])
            workers.append(w2)
        time.sleep(1.0)  # let every worker reach its consume loop
        long_tokens = [f"L{i}" for i in range(longs)]
        for token in long_tokens:
            target.send("bench.sleep", [token, cfg["long_s"]], target.long_queue)
        wait_for(
            lambda: (
                len({e["token"] for e in target.events_list() if e["kind"] == "start"}) >= longs
            ),
            20,
            "the long tasks to start",
        )
        enqueued = {}
        short_tokens = [f"S{i}" for i in range(cfg["shorts"])]
        for token in short_tokens:
            enqueued[token] = time.time()
            target.send("bench.sleep", [token, cfg["short_s"]], target.short_queue)
            time.sleep(cfg["gap_s"])
        wait_for(
            lambda: all(
                events_by_token(target.events_list()).get(t, {}).get("end")
                for t in short_tokens + long_tokens
            ),
            cfg["long_s"] + 30,
            "every task of the head-of-line scenario to finish",
            0.1,
        )
    finally:
        for proc in workers:
            ctx.registry.stop(proc)
    by_token = events_by_token(target.events_list())
    starts = {t: by_token[t]["start"][0] for t in short_tokens}
    durations = {t: by_token[t]["end"][0] - by_token[t]["start"][0] for t in short_tokens}
    busy_until = [by_token[t]["end"][0] for t in long_tokens]
    free_slots = 2 * len(workers) - longs
    ideal = ideal_starts(short_tokens, enqueued, busy_until, free_slots, durations)
    return {
        "shorts": [
            {
                "token": t,
                "wait_s": round(starts[t] - enqueued[t], 3),
                "extra_wait_s": round(starts[t] - ideal[t], 3),
            }
            for t in short_tokens
        ],
        "max_extra_wait_s": round(max(starts[t] - ideal[t] for t in short_tokens), 3),
    }


def worker_loss(
    ctx: Context, target: Target, kill: str, cfg: dict, window: float, hostname: str
) -> dict[str, Any]:
    """K sleep tasks on one worker (-c 2); SIGKILL a busy child or the main process.

    After a main-process kill a replacement worker starts at once (what a supervisor does).
    lost = tasks never completed within the window; parked = still in the broker then.
    """
    target.flush()
    time_limit = str(cfg["time_limit"])
    tokens = [f"K{i}" for i in range(cfg["tasks"])]
    proc, _ = start_worker(ctx, target, hostname, TASK_TIME_LIMIT=time_limit)
    replacement = None
    result: dict[str, Any] = {}
    try:
        target.send_many("bench.sleep", [[t, cfg["task_s"]] for t in tokens], target.short_queue)
        wait_for(
            lambda: sum(1 for e in target.events_list() if e["kind"] == "start") >= 2,
            20,
            "two tasks to start",
        )
        time.sleep(0.5)
        if kill == "child":
            running = events_by_token(target.events_list())
            first = min(running.values(), key=lambda entry: entry["start"][0])
            victim = first["pid"][0]
            if victim not in children_of(proc.pid):
                raise BenchError(f"pid {victim} is not a pool child of the worker")
            t_kill = time.time()
            os.kill(victim, signal.SIGKILL)
        else:
            ready_before = target.ready_count()
            t_kill = time.time()
            ctx.registry.send_signal(proc, signal.SIGKILL)
            proc.popen.wait(timeout=10)
            if ready_before is not None:
                # RabbitMQ requeues a dead connection's unacked messages itself: time it.
                with contextlib.suppress(BenchError):
                    wait_for(
                        lambda: target.ready_count() > ready_before,
                        10,
                        "the broker to requeue",
                        0.02,
                    )
                    result["broker_requeue_s"] = round(time.time() - t_kill, 3)
            time.sleep(0.5)
            result["orphans_after_main_kill"] = len(children_of(proc.pid))
            replacement, ready_s = start_worker(
                ctx, target, f"{hostname}b", TASK_TIME_LIMIT=time_limit
            )
            result["replacement_ready_s"] = round(ready_s, 2)
        started_before = {
            token
            for token, entry in events_by_token(target.events_list()).items()
            if entry["start"] and entry["start"][0] < t_kill
        }
        deadline = t_kill + window
        while time.time() < deadline:
            done = events_by_token(target.events_list())
            if all(done.get(t, {}).get("end") for t in tokens):
                break
            time.sleep(0.2)
        by_token = events_by_token(target.events_list())
        restarts = [s for t in started_before for s in by_token[t]["start"] if s > t_kill]
        completed = [t for t in tokens if by_token.get(t, {}).get("end")]
        result.update(
            {
                "tasks": len(tokens),
                "completed": len(completed),
                "lost": len(tokens) - len(completed),
                "executions": sum(len(by_token.get(t, {}).get("start", [])) for t in tokens),
                "running_at_kill": len(started_before),
                "parked_at_end": target.parked(),
                "redelivery_delay_s": round(min(restarts) - t_kill, 2) if restarts else None,
                "last_completion_after_kill_s": round(
                    max(by_token[t]["end"][-1] for t in completed) - t_kill, 2
                )
                if completed
                else None,
                "window_s": window,
            }
        )
        return result
    finally:
        if replacement is not None:
            ctx.registry.stop(replacement)
        ctx.registry.stop(proc)


# ------------------------------------------------------------- the booted service


def http(method: str, url: str, body: dict | None = None, auth: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, parse(response.read())
    except urllib.error.HTTPError as error:
        return error.code, parse(error.read())


def parse(body: bytes):
    """JSON when it is JSON (the service), else the text (Flower's /healthcheck: OK)."""
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body.decode(errors="replace")


def status_of(url: str) -> int | None:
    try:
        return http("GET", url)[0]
    except (OSError, ValueError):
        return None


TIME = Path("/usr/bin/time")


def run_measured(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a short command; return wall time, CPU time, peak RSS (MiB) and exit code.

    Peak RSS comes from /usr/bin/time: a child forked straight from this (large) Python
    process would report this process's RSS as its own maximum (exec keeps the old high
    water mark), so the fork must come from a small program. Without /usr/bin/time the
    figure is an upper bound.
    """
    report_file = Path(env.get("TMPDIR", "/tmp")) / f"bench-time-{os.getpid()}.txt"
    command = list(argv)
    if TIME.exists():
        command = [str(TIME), "-f", "%M", "-o", str(report_file), *argv]
    started = time.perf_counter()
    popen = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(popen.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(popen.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - started
    popen.returncode = os.waitstatus_to_exitcode(status)
    max_rss_kib = usage.ru_maxrss
    if TIME.exists():
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_rss_kib = int(report_file.read_text().split()[-1])
        report_file.unlink(missing_ok=True)
    return {
        "wall_s": round(wall, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        "max_rss_mib": round(max_rss_kib / 1024, 1),
        "exit": popen.returncode,
    }


def imported_modules(argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """Modules a command imports (python -X importtime), minus the standard library."""
    completed = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    names = []
    for line in completed.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.append(name)
    top = {name.split(".")[0] for name in names}
    return sorted(
        name
        for name in top
        if name not in sys.stdlib_module_names
        and not name.startswith("_")
        # Interpreter start-up hooks of the venv/pyenv, not imported by the probe.
        and name not in ("sitecustomize", "usercustomize")
    )


def boot_service(ctx: Context, target: Generated, cfg: dict, rep: int) -> dict[str, Any]:
    """Start every role at once; time each to ready; then round trips and probe costs."""
    package = ctx.plan["package"]
    rundir = ctx.work / f"boot-{rep}"
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir(parents=True)
    target.flush()
    web_port, flower_port = free_port(), free_port()
    env = target.env(
        BROKER_URL=target.broker_url,
        RESULT_BACKEND_URL=target.results_url,
        DATABASE_URL=f"sqlite:///{rundir / 'service.db'}",
        SECRET_KEY="bench-secret-key-bench-secret-key",
        DIAGNOSTICS_TOKEN=TOKEN,
        # Enough round trips for a real p99 (the service allows 10 a minute by default).
        DIAGNOSTICS_ROUNDTRIPS_PER_MINUTE="100000",
        WORKER_HEARTBEAT_FILE=str(rundir / "worker.heartbeat"),
        BEAT_HEARTBEAT_FILE=str(rundir / "beat.heartbeat"),
        BEAT_SCHEDULE_FILE=str(rundir / "celerybeat-schedule"),
        WEB_BIND=f"{LOOPBACK}:{web_port}",
        FLOWER_PORT=str(flower_port),
        FLOWER_ADDRESS=LOOPBACK,
        FLOWER_BASIC_AUTH=FLOWER_AUTH,
    )
    commands = ctx.commands
    t0 = time.perf_counter()
    migrate = subprocess.run(
        [ctx.bin(commands["migrate"][0]), *commands["migrate"][1:]],
        env=env,
        cwd=ctx.svc,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if migrate.returncode:
        raise BenchError(f"migrate failed:\n{migrate.stderr[-2000:]}")
    result: dict[str, Any] = {"migrate_s": round(time.perf_counter() - t0, 2)}
    roles = {
        "web": commands["web"],
        "worker": commands["worker"]["default"],
        "beat": commands["beat"],
        "flower": commands["flower"],
    }
    procs = {}
    try:
        for role, argv in roles.items():
            procs[role] = ctx.registry.start(
                f"boot-{role}", [ctx.bin(argv[0]), *argv[1:]], env=env, cwd=ctx.svc
            )
        spawned = min(p.started for p in procs.values())
        checks = {
            "web": lambda: status_of(f"http://{LOOPBACK}:{web_port}/health/ready") == 200,
            "worker": lambda: (rundir / "worker.heartbeat").exists(),
            "beat": lambda: (rundir / "beat.heartbeat").exists(),
            "flower": lambda: status_of(f"http://{LOOPBACK}:{flower_port}/healthcheck") == 200,
        }
        ready: dict[str, float] = {}
        deadline = time.time() + cfg["boot_timeout_s"]
        while len(ready) < len(checks) and time.time() < deadline:
            for role, check in checks.items():
                if role in ready:
                    continue
                if not procs[role].alive():
                    raise BenchError(f"{role} exited during boot:\n{procs[role].tail()}")
                with contextlib.suppress(Exception):
                    if check():
                        ready[role] = round(time.time() - spawned, 2)
            time.sleep(0.05)
        missing = sorted(set(checks) - set(ready))
        if missing:
            raise BenchError(f"not ready after {cfg['boot_timeout_s']} s: {missing}")
        result["ready_s"] = ready
        result["all_ready_s"] = max(ready.values())
        # The worker must also consume: wait until the round trip endpoint sees it finish.
        result["roundtrip_ms"] = roundtrips(web_port, cfg["roundtrips"])
        result["probe"] = probe_costs(ctx, env, package, cfg["probe_calls"], cfg["ping_calls"])
    finally:
        for proc in procs.values():
            ctx.registry.stop(proc)
    return result


def roundtrips(web_port: int, count: int) -> list[float]:
    """POST /health/celery/roundtrip, poll GET until SUCCESS; return each round trip in ms."""
    base = f"http://{LOOPBACK}:{web_port}/health/celery/roundtrip"
    auth = f"Bearer {TOKEN}"
    samples: list[float] = []
    give_up = time.monotonic() + 40 + count * 4
    while len(samples) < count and time.monotonic() < give_up:
        started = time.perf_counter()
        status, body = http("POST", base, {}, auth)
        if status == 429:  # the endpoint's own rate limit (10 per minute per web process)
            time.sleep(min(5.0, float((body or {}).get("retry_after") or 1.0)))
            continue
        if status != 202:
            raise BenchError(f"roundtrip POST answered {status}: {body}")
        task_id = body["task_id"]
        poll_deadline = time.monotonic() + 15
        while time.monotonic() < poll_deadline:
            status, body = http("GET", f"{base}/{task_id}", None, auth)
            if status == 200 and body["state"] == "SUCCESS":
                samples.append(round((time.perf_counter() - started) * 1000, 1))
                break
            time.sleep(0.005)
        else:
            raise BenchError(f"round trip {task_id} did not succeed within 15 s")
        time.sleep(0.05)
    return samples


def probe_costs(ctx, env, package, calls, ping_calls) -> dict[str, Any]:
    """Cost of the service's liveness probe vs `celery inspect ping -d <node>`."""
    probe = list(ctx.commands["worker_probe"])
    probe[0] = ctx.bin(probe[0])
    node = f"default@{HOST}"
    service_ping = [
        ctx.bin("celery"),
        "--app",
        ctx.commands["worker"]["default"][2],
        "inspect",
        "ping",
        "--destination",
        node,
        "--timeout",
        "5",
    ]
    minimal_ping = [
        ctx.bin("celery"),
        "--app",
        "bench_stock",
        "inspect",
        "ping",
        "--destination",
        node,
        "--timeout",
        "5",
    ]
    minimal_env = dict(env, BENCH_BROKER_URL=env["BROKER_URL"])
    out = {
        # The floor: starting the same interpreter and doing nothing.
        "python_startup": [
            run_measured([probe[0], "-c", "pass"], env, ctx.svc) for _ in range(calls)
        ],
        "probe": [run_measured(probe, env, ctx.svc) for _ in range(calls)],
        "ping_service_app": [run_measured(service_ping, env, ctx.svc) for _ in range(ping_calls)],
        "ping_minimal_app": [
            run_measured(minimal_ping, minimal_env, ctx.svc) for _ in range(ping_calls)
        ],
        "probe_third_party_imports": imported_modules(probe, env, ctx.svc),
    }
    stale = dict(env, WORKER_HEARTBEAT_FILE=str(ctx.work / "missing.heartbeat"))
    out["probe_missing_heartbeat_exit"] = run_measured(probe, stale, ctx.svc)["exit"]
    return out


# --------------------------------------------------------------------------- main


def guarded(errors: list, name: str, func, *args, **kwargs):
    """Run one measurement; record (do not raise) its failure so the rest still runs."""
    try:
        return func(*args, **kwargs)
    except Exception as error:  # a failed scenario is reported, never hidden
        print(f"[bench] {name} FAILED: {error}", flush=True)
        errors.append(
            {
                "scenario": name,
                "error": f"{type(error).__name__}: {error}",
                "trace": traceback.format_exc()[-3000:],
            }
        )
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    plan = json.loads(Path(options.plan).read_text())
    ctx = Context(plan)
    cfg = plan["config"]
    out: dict[str, Any] = {"errors": []}
    errors = out["errors"]
    port = ctx.redis_port

    def stop(signum, _frame):
        ctx.registry.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        if plan["mode"] == "rabbitmq":
            gen = Generated(ctx, plan["amqp_url"], events_db=6, results_db=5)
            make_generated_producer(gen, plan["package"], cfg["loss"]["time_limit"])
            runs = []
            with section("worker_loss_rabbitmq")(out):
                for rep in range(cfg["reps"]):
                    runs.append(
                        guarded(
                            errors,
                            f"rabbitmq main kill {rep}",
                            worker_loss,
                            ctx,
                            gen,
                            "main",
                            cfg["loss"],
                            cfg["loss"]["window_child_s"],
                            f"rmq{rep}",
                        )
                    )
            out["worker_loss_rabbitmq"] = {"generated": {"main": runs}}
            return 0

        stock = Stock(ctx, f"redis://{LOOPBACK}:{port}/0", events_db=4)
        gen = Generated(ctx, f"redis://{LOOPBACK}:{port}/1", events_db=3, results_db=2)
        make_generated_producer(gen, plan["package"], None)
        loss_gen = Generated(ctx, f"redis://{LOOPBACK}:{port}/7", events_db=8, results_db=9)
        make_generated_producer(loss_gen, plan["package"], cfg["loss"]["time_limit"])
        loss_stock = Stock(ctx, f"redis://{LOOPBACK}:{port}/10", events_db=11)
        profile = __import__(f"{plan['package']}.celery_profile", fromlist=["x"])
        out["derived"] = {
            "loss_time_limit_s": cfg["loss"]["time_limit"],
            "loss_visibility_timeout_s": profile.visibility_timeout(cfg["loss"]["time_limit"]),
            "default_visibility_timeout_s": profile.visibility_timeout(profile.HARD_TIME_LIMIT),
        }

        def alternate(rep):
            return (stock, gen) if rep % 2 == 0 else (gen, stock)

        profile_target = Profile(ctx, f"redis://{LOOPBACK}:{port}/12", events_db=13)
        tp = out.setdefault("throughput", {"stock": [], "generated": [], "profile": []})
        with section("throughput")(out):
            for rep in range(cfg.get("throughput_reps", cfg["reps"])):
                # Rotate the order of the three configurations from one repetition to the next.
                order = [stock, gen, profile_target]
                for target in order[rep % 3 :] + order[: rep % 3]:
                    tp[target.name].append(
                        guarded(
                            errors,
                            f"throughput {target.name} {rep}",
                            throughput,
                            ctx,
                            target,
                            cfg["noop_tasks"],
                        )
                    )

        hol = out.setdefault("hol", {})
        for scenario in cfg["hol_scenarios"]:
            runs = hol.setdefault(scenario, {"stock": [], "generated": []})
            with section(scenario)(out):
                for rep in range(cfg["reps"]):
                    for target in alternate(rep):
                        runs[target.name].append(
                            guarded(
                                errors,
                                f"{scenario} {target.name} {rep}",
                                head_of_line,
                                ctx,
                                target,
                                scenario,
                                cfg["hol"],
                            )
                        )

        loss = out.setdefault("worker_loss", {"stock": {}, "generated": {}})
        with section("worker_loss_child")(out):
            for rep in range(cfg["reps"]):
                for target in (loss_stock, loss_gen) if rep % 2 == 0 else (loss_gen, loss_stock):
                    loss[target.name].setdefault("child", []).append(
                        guarded(
                            errors,
                            f"child kill {target.name} {rep}",
                            worker_loss,
                            ctx,
                            target,
                            "child",
                            cfg["loss"],
                            cfg["loss"]["window_child_s"],
                            f"c{rep}",
                        )
                    )
        with section("worker_loss_main")(out):
            for rep in range(cfg["reps"]):
                # Both configurations in the same window, side by side (separate Redis DBs):
                # the generated one needs the visibility timeout plus kombu's restore sweep.
                results: dict[str, Any] = {}

                def one(t: Target, rep: int = rep, results: dict = results) -> None:
                    results[t.name] = guarded(
                        errors,
                        f"main kill {t.name} {rep}",
                        worker_loss,
                        ctx,
                        t,
                        "main",
                        cfg["loss"],
                        cfg["loss"]["window_main_s"],
                        f"m{rep}{t.name[0]}",
                    )

                threads = [
                    threading.Thread(target=one, args=(t,), daemon=True)
                    for t in (loss_gen, loss_stock)
                ]
                for thread in threads:
                    thread.start()
                    time.sleep(0.2)
                for thread in threads:
                    thread.join(cfg["loss"]["window_main_s"] + 120)
                for name in ("stock", "generated"):
                    loss[name].setdefault("main", []).append(results.get(name))

        boots = out.setdefault("boot", [])
        with section("boot")(out):
            for rep in range(cfg["boot_reps"]):
                boots.append(guarded(errors, f"boot {rep}", boot_service, ctx, gen, cfg, rep))
    finally:
        ctx.registry.stop_all()
        out["driver_rusage_children_cpu_s"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime, 1
        )
        Path(options.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
