"""Faults 9 and 10: the web's broker hangs (a black hole), and the web dies while it waits.

Only the web role reaches the broker through a proxy of the test's own
(tests/support/blackhole_proxy.py); the workers, beat and the sweeper use the real broker. The
proxy's black hole accepts TCP and never forwards or answers, on open connections and new
ones: a broker that hangs, or a route that drops packets. Two promises of the at-least-once
contract are proved through it:

9. `POST /jobs` answers 503 within PUBLISH_TIMEOUT_SECONDS (plus a little) and stores nothing.
10. A web process killed while its publish hangs (SIGTERM as a deploy does, SIGKILL as the OOM
    killer does) never leaves a job behind that nothing settles: a 503 left no row; a row left
    behind is queued and never delivered, and the sweeper re-sends it within one sweep interval
    of becoming sweepable, and it succeeds once. An unkeyed job was stored with its task id (one
    commit), so it becomes sweepable as a lost message (`stuck_after()`); a keyed job gets its
    task id only after the publish, so it is the "no task id" case (`unpublished_after()`).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from support.blackhole_proxy import BlackHoleProxy

from .harness import PUBLISH_TIMEOUT, SWEEP_INTERVAL, Faults
from .observe import outcome

pytestmark = pytest.mark.timeout(420)

# A 503 may take the publish bound plus this (the request's own database work and a loaded
# machine's scheduling).
PUBLISH_SLACK = 1.5
REFUSED_POSTS = 3
HTTP_SECONDS = 30
WEB_UP_SECONDS = 60
ROW_SECONDS = 10
# Every process of the killed web is gone within this.
GONE_SECONDS = 10
# A job left behind succeeds within one sweep interval after it becomes sweepable, plus this:
# the sweep's own start (a cron run imports the app first), the re-sent task's delivery and
# run, on a loaded machine.
SWEEP_SLACK = 8
JOB_DURATION = 0.2
SETTLE_SECONDS = 40


# --- the web behind the proxy ------------------------------------------------------------


def start_web(faults: Faults, env: dict[str, str], *, ready: bool) -> None:
    """Stop the web (SIGTERM, then what is left, by PID), start it with env, wait for it."""
    web = faults.web
    if web.alive():
        started = time.monotonic()
        web.terminate()
        web.wait_exit(started)
    web.kill()
    web.env = env
    faults.stack.restart_role("web")
    path = "/health/ready" if ready else "/health/live"
    faults.stack.wait(
        lambda: faults.stack.get(path, timeout=5).status_code == 200,
        timeout=WEB_UP_SECONDS,
        what=f"the restarted web never answered {path} with 200",
        guard=False,
    )
    web.remember_tree()


@pytest.fixture(scope="module")
def proxy(faults):
    """Put a BlackHoleProxy between the web and the broker; put the web back afterwards."""
    web = faults.web
    original = dict(web.env)
    upstream = urlsplit(original["BROKER_URL"])
    proxy = BlackHoleProxy(upstream.hostname, upstream.port)
    faults.stack.notes.append(
        f"web broker: through BlackHoleProxy 127.0.0.1:{proxy.port} to {upstream.hostname}:"
        f"{upstream.port}"
    )
    try:
        start_web(faults, {**original, "BROKER_URL": proxy.url_for(original["BROKER_URL"])},
                  ready=True)  # fmt: skip
        yield proxy
    finally:
        try:
            proxy.forward()
            start_web(faults, original, ready=True)
        finally:
            proxy.close()


# --- 9. a black-holed broker: 503 within the bound ---------------------------------------


def test_black_holed_broker_gives_503_within_publish_timeout(faults, proxy):
    """9. Broker black-holed: each POST /jobs is 503 within the publish bound, nothing stored."""
    faults.quiet()
    prefix = f"black-hole-{uuid.uuid4().hex[:6]}"
    answers = []
    proxy.black_hole()
    try:
        for index in range(REFUSED_POSTS):
            started = time.monotonic()
            response = faults.stack.post(
                "/jobs", {"name": f"{prefix}-{index}", "duration": 0}, timeout=HTTP_SECONDS
            )
            answers.append((response.status_code, round(time.monotonic() - started, 2)))
    finally:
        proxy.forward()
    stored = faults.jobs.count_named(prefix)
    # The partition is over: the same web process publishes again by itself.
    (after,) = faults.submit(f"{prefix}-after", [0.0])
    rows = faults.watch([after]).settled(SETTLE_SECONDS, faults.report)
    counts = outcome(rows, [after])
    slowest = max(seconds for _, seconds in answers)
    faults.results.record(
        "9 broker black-holed",
        **counts,
        recovery_seconds=slowest,
        note=f"POST /jobs while black-holed (code, s): {answers}, bound "
        f"{PUBLISH_TIMEOUT} s; stored {stored}; after the partition: 202 and "
        f"{rows[after].status}",
    )
    assert [code for code, _ in answers] == [503] * REFUSED_POSTS, faults.report(str(answers))
    assert slowest <= PUBLISH_TIMEOUT + PUBLISH_SLACK, faults.report(
        f"a 503 took {slowest} s (PUBLISH_TIMEOUT_SECONDS={PUBLISH_TIMEOUT}): {answers}"
    )
    assert stored == 0, faults.report(f"{stored} jobs stored by refused requests")
    assert counts["completed"] == 1, faults.report(str(rows))


# --- 10. the web killed while its publish hangs -------------------------------------------


def post_in_background(faults: Faults, name: str, key: str | None) -> tuple[threading.Thread, dict]:
    """POST /jobs (with an Idempotency-Key if given) on a thread; the answer lands in the dict."""
    answer: dict = {}
    headers = {"Idempotency-Key": key} if key else {}

    def post():
        try:
            response = faults.stack.post(
                "/jobs",
                {"name": name, "duration": JOB_DURATION},
                headers=headers,
                timeout=HTTP_SECONDS,
            )
            answer["code"] = response.status_code
        except requests.RequestException as error:
            answer["code"] = type(error).__name__

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, answer


def kill_web_mid_publish(faults: Faults, name: str, signum: int, key: str | None) -> dict:
    """POST a job, wait until its row is committed (the publish now hangs), signal the web."""
    web = faults.web
    thread, answer = post_in_background(faults, name, key)
    faults.stack.wait(
        lambda: faults.jobs.count_named(name) == 1,
        timeout=ROW_SECONDS,
        what=f"the job {name} was never stored",
        interval=0.05,
        guard=False,
    )
    killed = time.monotonic()
    if signum == signal.SIGTERM:
        web.terminate()  # the master only, as a container runtime does; it stops its workers
        exited = web.wait_exit(killed)
    else:
        web.kill()  # the whole process group at once: nothing runs on after the kill
        exited = not web.alive()
    thread.join(timeout=HTTP_SECONDS + 5)
    # A SIGKILLed worker, orphaned by its master, takes a moment to be gone: wait, bounded.
    deadline = time.monotonic() + GONE_SECONDS
    while (left := web.leftovers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exited and not left, faults.report(f"web still running {left}")
    return {
        "signal": signal.Signals(signum).name + (" keyed" if key else ""),
        "keyed": bool(key),
        "answer": answer.get("code", "no answer"),
        "exit_seconds": round(time.monotonic() - killed, 1),
    }


def sweep_until_settled(faults: Faults, ids: list[int], deadline: float) -> list[dict]:
    """Let the sweeper re-send the jobs: beat does on Redis; elsewhere run it as cron would."""
    if not ids:
        return []
    runs: list[dict] = []
    watch = faults.watch(ids)

    def settled():
        rows = watch.poll()
        return len(rows) == len(ids) and all(r.status == "succeeded" for r in rows.values())

    while not settled() and time.time() < deadline:
        started = time.time()
        if "beat" not in faults.stack.processes:
            runs.append(faults.operation("sweep"))
        while not settled() and time.time() < min(started + SWEEP_INTERVAL, deadline):
            time.sleep(0.2)
    return runs


# The web is killed in each way, mid-publish: SIGTERM (a deploy) and SIGKILL (the OOM killer)
# of an unkeyed request, and SIGKILL of a keyed one.
KILLS = ((signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True))


def test_web_killed_mid_publish_leaves_nothing_unsettled(faults, proxy):
    """10. Web killed (SIGTERM, SIGKILL; unkeyed, keyed) while its publish hangs: a 503 left no
    row; each row left behind is re-sent by the sweeper within one sweep interval of becoming
    sweepable and succeeds once."""
    faults.quiet()
    stack = faults.stack
    prefix = f"web-dies-{uuid.uuid4().hex[:6]}"
    served_env = dict(faults.web.env)
    cases = []
    proxy.black_hole()
    try:
        for signum, keyed in KILLS:
            name = f"{prefix}-{signal.Signals(signum).name.lower()}{'-keyed' if keyed else ''}"
            if not faults.web.alive():
                start_web(faults, served_env, ready=False)  # the broker still hangs
            case = kill_web_mid_publish(faults, name, signum, key=name if keyed else None)
            case["rows"] = faults.jobs.named(name)
            cases.append(case)
    finally:
        proxy.forward()
    killed_at = time.time()
    start_web(faults, served_env, ready=True)
    web_up = round(time.time() - killed_at, 1)
    (fresh,) = faults.submit(f"{prefix}-fresh", [JOB_DURATION])
    left = {job_id: row for case in cases for job_id, row in case["rows"].items()}
    # A keyed row has no task id yet (the fast case); an unkeyed one was stored with its task
    # id, so the sweeper waits as long as for a message the broker lost.
    sweepable = {
        job_id: row.updated_at.timestamp()
        + faults.profile["unpublished_after" if row.task_id is None else "stuck_after"]
        for job_id, row in left.items()
    }
    deadline = max(sweepable.values(), default=time.time()) + SWEEP_INTERVAL + SWEEP_SLACK
    runs = sweep_until_settled(faults, list(left), deadline)
    ids = [*left, fresh]
    rows = faults.watch(ids).settled(SETTLE_SECONDS, faults.report)
    counts = outcome(rows, ids)
    after_sweepable = {
        job_id: round(rows[job_id].updated_at.timestamp() - sweepable[job_id], 1) for job_id in left
    }
    recovered = {
        job_id: round(rows[job_id].updated_at.timestamp() - killed_at, 1) for job_id in left
    }
    summary = [
        f"{case['signal']}: answer {case['answer']}, web gone in {case['exit_seconds']} s, "
        f"rows left {len(case['rows'])}"
        for case in cases
    ]
    faults.results.record(
        "10 web killed mid-publish",
        **counts,
        recovery_seconds=max(recovered.values(), default=None),
        note=f"{'; '.join(summary)}; web up again in {web_up} s; rows left succeeded "
        f"{list(after_sweepable.values())} s after becoming sweepable (sweep every "
        f"{SWEEP_INTERVAL} s{', by beat' if not runs else f', {len(runs)} cron runs'}), "
        f"{list(recovered.values())} s after the kill",
    )
    for case in cases:
        # The contract: a 503 stored nothing; whatever else happened, every row left behind
        # is a queued job no delivery ever claimed (the sweeper's case): a keyed one without
        # a task id, an unkeyed one with the task id it was stored with.
        if case["answer"] == 503:
            assert not case["rows"], faults.report(f"a 503 left a row: {case}")
        for row in case["rows"].values():
            assert row.status == "queued" and row.attempts == 0, faults.report(
                f"{case}: the job left behind was delivered"
            )
            assert (row.task_id is None) == case["keyed"], faults.report(
                f"{case}: task id {row.task_id!r}"
            )
    for sigkill in cases[1:]:
        assert sigkill["answer"] != 202 and len(sigkill["rows"]) == 1, faults.report(
            f"SIGKILL mid-publish should leave its job behind: {sigkill}"
        )
    assert counts["lost"] == 0 and counts["completed"] == len(ids), faults.report(str(counts))
    for job_id in left:
        assert rows[job_id].side_effects == 1 and rows[job_id].attempts == 1, faults.report(
            str(rows[job_id])
        )
        assert after_sweepable[job_id] <= SWEEP_INTERVAL + SWEEP_SLACK, faults.report(
            f"job {job_id} succeeded {after_sweepable[job_id]} s after it became sweepable"
        )
    assert not stack.dead(), faults.report("a role died")
