"""Benchmark the generated service against stock Celery: one command, every metric.

    uv run python benchmarks/run.py            # full: 3+ repetitions, ~30 minutes
    uv run python benchmarks/run.py --quick    # CI smoke: 1 repetition, under 5 minutes

It renders the template (Redis broker, and RabbitMQ for the redelivery metric), installs
each rendering with `uv sync`, starts a throwaway redis-server on a free 127.0.0.1 port and
a RabbitMQ vhost of its own on 127.0.0.1:5672, then runs benchmarks/driver.py inside the
rendered service's venv (STOCK and GENERATED share that venv's celery). It writes
results/latest.json and results/latest.md (or --out DIR) and prints the table.
Every process it starts is stopped by PID, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# The shared support package of the template's tests (throwaway servers, processes). A script
# run as `python benchmarks/run.py` has only benchmarks/ on its path; the driver gets tests/
# through PYTHONPATH.
TESTS_DIR = REPO / "tests"
sys.path.append(str(TESTS_DIR))

import report  # noqa: E402
from harness import BenchError  # noqa: E402
from machine import cpu_times, loadavg, steal_percent  # noqa: E402
from support.servers import DEFAULT_AMQP_URL, RedisServer, SharedRabbitVhost  # noqa: E402

PACKAGE = "example_service"
# The variants measured: SQLite keeps the database out of the picture (no server needed).
REDIS_ANSWERS = ["database=sqlite", "use_kubernetes=false"]
RABBITMQ_ANSWERS = ["broker=rabbitmq", *REDIS_ANSWERS]
# The HTTP path runs on the default variant (PostgreSQL), as a user would deploy it.
POSTGRES_ANSWERS: list[str] = []
# The machine's PostgreSQL (trust auth); the HTTP scenario creates databases of its own on it.
POSTGRES_BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"
# Queue-growth variants: N queues (copier.yml allows at most 8).
QUEUE_LISTS = {
    1: "[default]",
    4: "[default, jobs, q2, q3]",
    8: "[default, jobs, q2, q3, q4, q5, q6, q7]",
}

DEFAULT_OUT = BENCH_DIR / "results"
DOCS_PLOT = BENCH_DIR.parent / "docs" / "img" / "hol.png"

FULL = {
    "reps": 3,
    # Throughput is the noisiest figure on a shared 2-vCPU machine: more repetitions.
    "throughput_reps": 5,
    "scaling_reps": 2,
    "noop_tasks": 5000,
    # Publish: rounds of one block per producer, interleaved (scenarios/publish.py).
    "publish_rounds": 12,
    "publish_block": 1000,
    "hol_scenarios": ["hol1", "hol3"],
    "hol": {"long_s": 6.0, "shorts": 8, "short_s": 0.05, "gap_s": 0.25},
    # TASK_TIME_LIMIT=10 → visibility timeout 25 s; the profile's restore scan runs every 2 s,
    # so the generated worker settles every task ~28 s after a main kill (the 2026-12-03
    # run): the window is about twice that. STOCK waits all of it (its tasks never return).
    "loss": {
        "tasks": 6,
        "task_s": 2.0,
        "time_limit": 10,
        "window_child_s": 30,
        "window_main_s": 60,
    },
    "boot_reps": 3,
    "boot_timeout_s": 60,
    "roundtrips": 200,
    "probe_calls": 20,
    "ping_calls": 5,
    "copier_reps": 3,
    "http": {
        "reps": 3,
        "clients": 16,
        "saturation_s": 8,
        "curve_reps": 2,
        "curve_s": 6,
        "curve_shares": [0.25, 0.5, 0.75, 0.9],
        "fixed_share": 0.5,
        "e2e_reps": 2,
        "e2e_jobs": 1000,
        "settle_timeout_s": 120,
    },
    "queues_growth": {
        "reps": 2,
        "variants": [1, 4, 8],
        "publish_tasks": 2000,
        "health_calls": 3,
        "doctor_calls": 2,
    },
}
QUICK = {
    "reps": 1,
    "noop_tasks": 1000,
    "publish_rounds": 4,
    "publish_block": 300,
    "hol_scenarios": ["hol3"],
    "hol": {"long_s": 4.0, "shorts": 6, "short_s": 0.05, "gap_s": 0.25},
    "loss": {
        "tasks": 6,
        "task_s": 2.0,
        "time_limit": 10,
        "window_child_s": 20,
        "window_main_s": 35,
    },
    "boot_reps": 1,
    "boot_timeout_s": 60,
    "roundtrips": 5,
    "probe_calls": 5,
    "ping_calls": 2,
    "copier_reps": 2,
    "http": {
        "reps": 1,
        "clients": 16,
        "saturation_s": 2,
        "curve_reps": 1,
        "curve_s": 3,
        # One pass: the fixed load right after the saturation, in the same boot, at a rate
        # well below both (saturation is ~150+ requests/s here).
        "single_pass_rate": 50,
        "e2e_reps": 1,
        "e2e_jobs": 100,
        "settle_timeout_s": 60,
    },
    "queues_growth": {
        "reps": 1,
        # The Redis variant already rendered (2 queues) is the baseline: one render less.
        "variants": [2, 8],
        "publish_tasks": 300,
        "health_calls": 2,
        "doctor_calls": 1,
    },
}


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# The template rendered: a clone of the committed HEAD (set by main), so that uncommitted
# edits in the working tree never end up in the measured service.
TEMPLATE = {"path": REPO}


def clone_template(work: Path) -> Path:
    """Clone the repository's HEAD into the work directory; return its path."""
    clone = work / "template"
    run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], timeout=120)
    TEMPLATE["path"] = clone
    return clone


def postgres_answers() -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=2):
        return True
    return False


def copier_argv(dst: Path, answers: list[str]) -> list[str]:
    copier = Path(sys.executable).parent / "copier"
    argv = [
        str(copier) if copier.exists() else "copier",
        "copy",
        "--defaults",
        "--vcs-ref",
        "HEAD",
        "--quiet",
    ]
    for answer in answers:
        argv += ["-d", answer]
    return [*argv, str(TEMPLATE["path"]), str(dst)]


def run(argv: list[str], timeout: float, cwd: Path | None = None, env=None) -> float:
    """Run a command to completion (bounded); return its wall time; raise on failure."""
    started = time.perf_counter()
    completed = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if completed.returncode:
        raise BenchError(f"{' '.join(argv)} failed:\n{completed.stderr[-3000:]}")
    return round(time.perf_counter() - started, 3)


def render_and_sync(work: Path, name: str, answers: list[str]) -> Path:
    dst = work / name
    run(copier_argv(dst, answers), timeout=180)
    # Bytecode compiled at install, as the image does (UV_COMPILE_BYTECODE=1): the workers run
    # with PYTHONDONTWRITEBYTECODE=1, so without it every start would compile every module.
    run(["uv", "sync", "--quiet", "--compile-bytecode"], timeout=600, cwd=dst)
    return dst


@contextlib.contextmanager
def rabbitmq_vhost():
    """A vhost of our own on the machine's RabbitMQ (guest/guest, 127.0.0.1:5672)."""
    if shutil.which("rabbitmqctl") is None:
        raise BenchError("rabbitmqctl not found")
    try:
        vhost = SharedRabbitVhost(DEFAULT_AMQP_URL, prefix="bench")
    except AssertionError as error:  # rabbitmqctl refused: reported like any failed step
        raise BenchError(str(error)) from None
    try:
        yield vhost.url()
    finally:
        with contextlib.suppress(Exception):
            vhost.close()


def version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as error:  # a missing tool is noted, not fatal
        return f"unknown ({type(error).__name__})"


def machine_info(svc: Path) -> dict[str, Any]:
    py = str(svc / ".venv" / "bin" / "python")
    versions = subprocess.run(
        [
            py,
            "-c",
            "import sys,celery,kombu,billiard,redis,flask,gunicorn;"
            "print(sys.version.split()[0],celery.__version__,kombu.__version__,"
            "billiard.__version__,redis.__version__,flask.__version__,gunicorn.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    keys = ["python", "celery", "kombu", "billiard", "redis-py", "flask", "gunicorn"]
    info: dict[str, Any] = {"nproc": os.cpu_count(), "kernel": platform.release()}
    info.update(dict(zip(keys, versions, strict=False)))
    info["redis-server"] = version_of(["redis-server", "--version"])
    info["rabbitmq"] = version_of(["rabbitmqctl", "version"])
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    return info


def driver(svc: Path, plan: dict[str, Any], work: Path, name: str, timeout: float) -> dict:
    plan_path = work / f"plan-{name}.json"
    out_path = work / f"raw-{name}.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    python = svc / ".venv" / "bin" / "python"
    # The driver imports the shared support package from tests/ (stdlib only).
    pythonpath = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    popen = subprocess.Popen(
        [
            str(python),
            str(BENCH_DIR / "driver.py"),
            "--plan",
            str(plan_path),
            "--out",
            str(out_path),
        ],
        cwd=svc,
        env={**os.environ, "PYTHONPATH": pythonpath},
        start_new_session=True,
    )
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"driver {name} exceeded {timeout:.0f} s: stopping it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=10)
    finally:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
    if not out_path.exists():
        return {"errors": [{"scenario": f"driver {name}", "error": "no output (crashed?)"}]}
    return json.loads(out_path.read_text())


def http_run(work: Path, plan: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The HTTP path on the default variant (PostgreSQL); an error row when it cannot run."""
    try:
        if not postgres_answers():
            raise BenchError("no PostgreSQL on 127.0.0.1:5432: the HTTP path needs it")
        log("rendering and installing the default (PostgreSQL) variant")
        svc = render_and_sync(work, "svc-postgresql", POSTGRES_ANSWERS)
    except BenchError as error:
        return {"errors": [{"scenario": "http", "error": str(error)}]}
    plan_http = dict(
        plan,
        service_dir=str(svc),
        mode="http",
        postgres_base_url=POSTGRES_BASE_URL,
        job_queue="jobs",
        work_dir=str(work / "driver-http"),
    )
    return driver(svc, plan_http, work, "http", timeout=1500)


def queues_run(
    work: Path, plan: dict[str, Any], cfg: dict[str, Any], rendered: dict[int, Path]
) -> dict[str, Any]:
    """Queue growth: one driver per variant and repetition, the variants interleaved."""
    growth = cfg["queues_growth"]
    out: dict[str, Any] = {"errors": [], "runs": {}, "load": {}}
    services = {}
    for count in growth["variants"]:
        if count in rendered:  # a variant with that many queues is already installed
            services[count] = rendered[count]
            continue
        try:
            log(f"rendering and installing the {count}-queue variant")
            services[count] = render_and_sync(
                work, f"svc-queues-{count}", [f"queues={QUEUE_LISTS[count]}"]
            )
        except BenchError as error:
            out["errors"].append({"scenario": f"queues {count}", "error": str(error)})
    for rep in range(growth["reps"]):
        order = list(services) if rep % 2 == 0 else list(reversed(services))
        for count in order:
            plan_q = dict(
                plan,
                service_dir=str(services[count]),
                mode="queues",
                rep=rep,
                work_dir=str(work / f"driver-queues-{count}-{rep}"),
            )
            result = driver(services[count], plan_q, work, f"queues-{count}-{rep}", timeout=600)
            out["errors"] += result.get("errors") or []
            out["runs"].setdefault(str(count), []).append(result.get("queues_growth"))
            for name, value in (result.get("load") or {}).items():
                out["load"][f"{name}_rep{rep}"] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, fewer tasks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also draw hol.png with matplotlib (default in full mode)",
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args()
    cfg = QUICK if options.quick else FULL
    os.environ.setdefault("PYENV_VERSION", "3.11.7:3.12.1:3.13.0")
    started, cpu_before, load_before = time.time(), cpu_times(), loadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    redis_server: RedisServer | None = None
    raw: dict[str, Any] = {"mode": "quick" if options.quick else "full", "config": cfg}

    def on_signal(signum, _frame):
        if redis_server is not None:
            redis_server.close()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        log(f"work directory {work}")
        clone_template(work)
        log("timing `copier copy --defaults`")
        raw["copier_copy_s"] = [
            run(copier_argv(work / f"copier-{i}", []), timeout=180)
            for i in range(cfg["copier_reps"])
        ]
        log("rendering and installing the Redis and RabbitMQ variants")
        svc = render_and_sync(work, "svc-redis", REDIS_ANSWERS)
        svc_rmq = render_and_sync(work, "svc-rabbitmq", RABBITMQ_ANSWERS)
        raw["machine"] = machine_info(svc)
        # Databases past Redis's 16: every target has databases of its own (driver.py).
        redis_server = RedisServer("redis", work, databases=24)
        redis_server.start()
        port = redis_server.port
        log(redis_server.describe())
        plan = {
            "service_dir": str(svc),
            "work_dir": str(work / "driver"),
            "redis_port": port,
            "package": PACKAGE,
            "mode": "redis",
            "config": cfg,
        }
        raw["driver"] = driver(svc, plan, work, "redis", timeout=3600)
        try:
            with rabbitmq_vhost() as amqp_url:
                plan_rmq = dict(
                    plan,
                    service_dir=str(svc_rmq),
                    mode="rabbitmq",
                    amqp_url=amqp_url,
                    work_dir=str(work / "driver-rmq"),
                )
                raw["driver_rabbitmq"] = driver(svc_rmq, plan_rmq, work, "rabbitmq", 900)
        except BenchError as error:
            raw["driver_rabbitmq"] = {"errors": [{"scenario": "rabbitmq", "error": str(error)}]}
        raw["driver_http"] = http_run(work, plan, cfg)
        raw["driver_queues"] = queues_run(work, plan, cfg, {2: svc})
    finally:
        if redis_server is not None:
            redis_server.close()
        raw["errors"] = [
            *(raw.get("driver", {}).get("errors") or []),
            *(raw.get("driver_rabbitmq", {}).get("errors") or []),
            *(raw.get("driver_http", {}).get("errors") or []),
            *(raw.get("driver_queues", {}).get("errors") or []),
        ]
        machine = raw.setdefault("machine", {})
        machine["cpu_steal_percent_whole_run"] = steal_percent(cpu_before, cpu_times())
        machine["loadavg_start"] = load_before
        machine["loadavg_end"] = loadavg()
        raw["duration_s"] = round(time.time() - started)
        raw["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = report.summarize(raw)
    result = {"summary": summary, "raw": raw}
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "latest.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    table = report.markdown(raw, summary)
    (options.out / "latest.md").write_text(table)
    print(table)
    if options.plot or (not options.quick and not options.no_plot):
        plot(options.out)
    return 0


def plot(out: Path) -> None:
    """Draw hol.png with matplotlib through uvx (nothing added to the project)."""
    # The published run's plot lives with the docs page that shows it.
    image = DOCS_PLOT if out == DEFAULT_OUT else out / "hol.png"
    argv = [
        "uvx",
        "--with",
        "matplotlib",
        "python",
        str(BENCH_DIR / "plot.py"),
        str(out / "latest.json"),
        str(image),
    ]
    try:
        run(argv, timeout=300)
        log(f"wrote {image}")
    except Exception as error:  # the plot is optional: say how to draw it
        log(f"plot skipped ({error}); run: {' '.join(argv)}")


if __name__ == "__main__":
    sys.exit(main())
