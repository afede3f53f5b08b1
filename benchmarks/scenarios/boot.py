"""The booted service: every role started at once, round trips and the liveness probe's cost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness import FLOWER_AUTH, BenchError, Context, Generated, guarded, section
from support.servers import HOST, free_port

# Worker node names are <queue>@<this machine's host name>.
NODE_HOST = socket.gethostname()
TOKEN = "bench-diagnostics-token"


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
        WEB_BIND=f"{HOST}:{web_port}",
        FLOWER_PORT=str(flower_port),
        FLOWER_ADDRESS=HOST,
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
            "web": lambda: status_of(f"http://{HOST}:{web_port}/health/ready") == 200,
            "worker": lambda: (rundir / "worker.heartbeat").exists(),
            "beat": lambda: (rundir / "beat.heartbeat").exists(),
            "flower": lambda: status_of(f"http://{HOST}:{flower_port}/healthcheck") == 200,
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
    base = f"http://{HOST}:{web_port}/health/celery/roundtrip"
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


def inspect_ping(ctx: Context, app: str, node: str) -> list[str]:
    """`celery --app <app> inspect ping` of one worker node, as an operator would probe it."""
    return [
        ctx.bin("celery"),
        "--app",
        app,
        "inspect",
        "ping",
        "--destination",
        node,
        "--timeout",
        "5",
    ]


def probe_costs(ctx, env, package, calls, ping_calls) -> dict[str, Any]:
    """Cost of the service's liveness probe vs `celery inspect ping -d <node>`."""
    probe = list(ctx.commands["worker_probe"])
    probe[0] = ctx.bin(probe[0])
    node = f"default@{NODE_HOST}"
    service_ping = inspect_ping(ctx, ctx.commands["worker"]["default"][2], node)
    minimal_ping = inspect_ping(ctx, "bench_stock", node)
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


def measure(ctx: Context, generated: Generated, cfg: dict, out: dict[str, Any]) -> None:
    """Boot the service the plan's number of times."""
    boots = out.setdefault("boot", [])
    with section("boot")(out):
        for rep in range(cfg["boot_reps"]):
            boots.append(
                guarded(out["errors"], f"boot {rep}", boot_service, ctx, generated, cfg, rep)
            )
