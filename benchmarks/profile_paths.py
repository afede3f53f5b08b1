"""Where the time goes: pyinstrument profiles of the publish path and of worker start-up.

Diagnostic, not part of the timed run. Run with the rendered service's Python, pyinstrument
installed into its venv (`uv pip install --python <svc>/.venv/bin/python pyinstrument`):

    cd <svc> && PYTHONPATH=<repo>/benchmarks:<repo>/tests .venv/bin/python \\
        <repo>/benchmarks/profile_paths.py --redis-port PORT --out DIR

publish: N `send_task` calls through a shared producer, STOCK (plain Celery) vs the
service's broker-only app (the throughput scenario's publish figure), and N `.delay()` of
the job task in a Flask app context: the Flask docs' pattern vs the web's `publish()`.
startup: each worker command in-process under the profiler, stopped at `worker_ready`.
Writes DIR/<name>.txt (pyinstrument's tree) and prints the top functions by own time and
the service's own frames by total time, with ms.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def walk(frame, out_self: dict, out_total: dict, seen: tuple = ()) -> None:
    key = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    out_self[key] = out_self.get(key, 0.0) + frame.total_self_time
    # Inclusive time counted once per call path (recursion would count twice).
    if key not in seen:
        out_total[key] = out_total.get(key, 0.0) + frame.time
    for child in frame.children:
        walk(child, out_self, out_total, (*seen, key))


def summarize(profiler, name: str, out: Path, calls: int | None = None) -> dict:
    session = profiler.last_session
    (out / f"{name}.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False)
    )
    own: dict[str, float] = {}
    total: dict[str, float] = {}
    root = session.root_frame()
    if root is not None:
        walk(root, own, total)
    top_self = sorted(own.items(), key=lambda kv: -kv[1])[:15]
    package = os.environ.get("BENCH_PACKAGE", "example_service")
    service = sorted(
        ((k, v) for k, v in total.items() if package in k or "bench_" in k),
        key=lambda kv: -kv[1],
    )[:15]
    # The library frames that take longest (inclusive), import machinery left out.
    hot = sorted(
        (
            (k, v)
            for k, v in total.items()
            if v >= 0.01
            and "importlib" not in k
            and "<built-in>" not in k
            and "profile_paths.py" not in k
        ),
        key=lambda kv: -kv[1],
    )[:40]
    result = {
        "name": name,
        "hot_total_ms": [[k, round(v * 1000, 1)] for k, v in hot],
        "duration_ms": round(session.duration * 1000, 1),
        "calls": calls,
        "per_call_us": round(session.duration * 1e6 / calls, 1) if calls else None,
        "top_self_ms": [[k, round(v * 1000, 1)] for k, v in top_self],
        "service_total_ms": [[k, round(v * 1000, 1)] for k, v in service],
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def profile_publish(port: int, n: int, out: Path) -> list[dict]:
    from celery import Celery
    from pyinstrument import Profiler

    os.environ.setdefault("BENCH_REDIS_URL", f"redis://{HOST}:{port}/9")
    package = os.environ.get("BENCH_PACKAGE", "example_service")
    import importlib

    import redis

    results = []
    stock = Celery("bench_stock_producer", broker=f"redis://{HOST}:{port}/0")
    apps = importlib.import_module(f"{package}.celery.apps")
    generated = apps.create_broker_celery_app(
        {"BROKER_URL": f"redis://{HOST}:{port}/1", "RESULT_BACKEND_URL": f"redis://{HOST}:{port}/2"}
    )
    for name, app, queue in (
        ("publish-stock", stock, "celery"),
        ("publish-generated", generated, "default"),
    ):
        with app.producer_or_acquire() as producer:  # warm: connection, first declare
            app.send_task("bench.noop", args=[1], queue=queue, producer=producer)
        profiler = Profiler(interval=0.0002)
        profiler.start()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("bench.noop", args=[n], queue=queue, producer=producer)
        profiler.stop()
        results.append(summarize(profiler, name, out, n))
    for db in (0, 1, 2):
        redis.Redis(host=HOST, port=port, db=db).flushdb()
    return results


def profile_delay(port: int, n: int, out: Path) -> list[dict]:
    """`.delay()` of the job task from a request's app context: Flask docs vs the web."""
    import redis
    from pyinstrument import Profiler

    package = os.environ.get("BENCH_PACKAGE", "example_service")
    db_file = out / "profile.db"
    os.environ.update(
        {
            "BENCH_DATABASE_URL": f"sqlite:///{db_file}",
            "BENCH_BROKER_URL": f"redis://{HOST}:{port}/3",
            "BENCH_PACKAGE": package,
            "DATABASE_URL": f"sqlite:///{db_file}",
            "BROKER_URL": f"redis://{HOST}:{port}/4",
            "RESULT_BACKEND_URL": f"redis://{HOST}:{port}/5",
            "SECRET_KEY": "bench-secret-key-bench-secret-key",
            "METRICS_PORT": "0",
            "METRICS_ADDRESS": HOST,
            "METRICS_DIR": str(out / "metrics"),
        }
    )
    import importlib

    import bench_flask_stock

    def stock_case():
        return bench_flask_stock.app, lambda i: bench_flask_stock.process_job.delay(i)

    def generated_case():
        # Imported after the stock case: each sets its Celery app as the process default,
        # and a shared_task resolves through the default.
        web = importlib.import_module(f"{package}.web")
        publishing = importlib.import_module(f"{package}.celery.publishing")
        tasks = importlib.import_module(f"{package}.jobs.tasks")
        return web.app, lambda i: publishing.publish(tasks.process_job, args=(i,))

    results = []
    for name, case in (("delay-stock", stock_case), ("delay-generated", generated_case)):
        flask_app, send = case()
        with flask_app.test_request_context("/jobs", method="POST"):
            send(0)  # warm
            profiler = Profiler(interval=0.0002)
            profiler.start()
            for i in range(n):
                send(i + 1)
            profiler.stop()
        results.append(summarize(profiler, name, out, n))
    for db in (3, 4, 5):
        redis.Redis(host=HOST, port=port, db=db).flushdb()
    return results


def profile_startup(port: int, out: Path) -> list[dict]:
    """Each worker command in a child process under the profiler, stopped when ready."""
    package = os.environ.get("BENCH_PACKAGE", "example_service")
    hb = out / "worker.heartbeat"
    env = dict(os.environ)
    env.update(
        {
            "BENCH_BROKER_URL": f"redis://{HOST}:{port}/6",
            "BENCH_REDIS_URL": f"redis://{HOST}:{port}/9",
            "BROKER_URL": f"redis://{HOST}:{port}/7",
            "RESULT_BACKEND_URL": f"redis://{HOST}:{port}/8",
            "DATABASE_URL": f"sqlite:///{out / 'worker.db'}",
            "WORKER_HEARTBEAT_FILE": str(hb),
            "METRICS_PORT": "0",
            "METRICS_ADDRESS": HOST,
            "METRICS_DIR": str(out / "metrics-worker"),
        }
    )
    results = []
    commands = {
        "startup-stock": ["-A", "bench_stock", "worker", "-c", "2", "--loglevel", "INFO"],
        "startup-generated": [
            "--app",
            f"{package}.worker:worker_app",
            "worker",
            "--queues",
            "default",
            "--hostname",
            "default@%h",
            "--loglevel",
            "INFO",
            "--include",
            "bench_service_tasks",
        ],
    }
    for name, argv in commands.items():
        report = out / f"{name}.json"
        report.unlink(missing_ok=True)
        child = subprocess.Popen(
            [sys.executable, __file__, "--worker-child", str(out), name, *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(out / f"{name}.log").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while not report.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        if report.exists():
            result = json.loads(report.read_text())
            print(json.dumps(result, indent=1), flush=True)
            results.append(result)
        else:
            results.append({"name": name, "error": "no report (see the log)"})
    return results


def worker_child(out: Path, name: str, argv: list[str]) -> None:
    """In the child: profile `celery <argv>` from the first import until worker_ready."""
    from pyinstrument import Profiler

    started = time.perf_counter()
    profiler = Profiler(interval=0.0005)
    profiler.start()
    from celery.signals import worker_ready

    def ready(**_kwargs) -> None:
        profiler.stop()
        result = summarize(profiler, name, out)
        result["wall_to_ready_s"] = round(time.perf_counter() - started, 2)
        (out / f"{name}.json").write_text(json.dumps(result))
        os.kill(os.getpid(), signal.SIGTERM)  # warm shutdown: the children exit with it

    worker_ready.connect(ready, weak=False)
    from celery.bin.celery import main

    sys.argv = ["celery", *argv]
    main()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker-child":
        worker_child(Path(sys.argv[2]), sys.argv[3], sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", type=int, default=3000)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    results = {
        "publish": profile_publish(options.redis_port, options.tasks, options.out),
        "delay": profile_delay(options.redis_port, options.tasks // 3, options.out),
        "startup": profile_startup(options.redis_port, options.out),
    }
    (options.out / "profile.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
