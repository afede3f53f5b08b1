"""The fault tier's fixtures: each broker's variant booted once for every fault module.

`variant` is a package-scoped parameter, so pytest runs every fault test of the Redis variant,
then every one of the RabbitMQ variant, and `faults` boots each of them once (about 20 s of
uv sync, migrate and start) for all of tests/faults/. harness.py says how it is prepared.
"""

from __future__ import annotations

import pytest
from support.servers import PostgresCluster
from support.stack import prepare

from .harness import (
    JOB_CONCURRENCY,
    PUBLISH_TIMEOUT,
    SWEEP_INTERVAL,
    TIME_LIMIT,
    Faults,
    fault_variants,
    inject_poison_task,
    read_profile,
)
from .observe import Jobs
from .report import Results

VARIANTS = fault_variants()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (the cleanup below reads it)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="package", params=VARIANTS, ids=[v.id for v in VARIANTS])
def variant(request):
    """One fault variant per broker (tests/variants.yml ids in harness.FAULT_VARIANT_IDS)."""
    return request.param


@pytest.fixture(scope="package")
def faults(variant, rendered, tmp_path_factory):
    """Boot the variant for faults; stop every process by PID and the servers afterwards."""
    folder = tmp_path_factory.mktemp("faults")
    stack = prepare(variant.id, rendered(variant), folder)
    assert stack.answers["database"] == "postgresql", f"{variant.id}: faults need PostgreSQL"
    poison_task = inject_poison_task(stack)
    profile = read_profile(stack, TIME_LIMIT, PUBLISH_TIMEOUT)
    stack.grace_seconds = profile["grace_period_seconds"]
    stack.env_overrides = {
        "all": {
            "TASK_TIME_LIMIT": str(TIME_LIMIT),
            "PUBLISH_TIMEOUT_SECONDS": str(PUBLISH_TIMEOUT),
            "SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL),
        },
        f"worker-{stack.job_queue}": {"WORKER_CONCURRENCY": str(JOB_CONCURRENCY)},
    }
    stack.persistent_broker = True
    stack.database_factory = PostgresCluster
    results = Results(variant.id, stack.answers["broker"], profile)
    try:
        stack.boot()
        yield Faults(stack, Jobs(stack.database.dsn()), profile, results, poison_task)
    finally:
        try:
            stack.close()
        finally:
            path = results.write(tmp_path_factory.getbasetemp() / f"faults-{variant.id}.json")
            print(f"\n{results.table()}\nboot timings: {stack.timings}\nfigures: {path}")


@pytest.fixture(autouse=True)
def restore_rest_after_a_failed_test(request, faults):
    """After a failed test: start dead roles again, cancel the jobs it left.

    One lost job or dead worker must fail the test that saw it, not every test after it (each
    starts by waiting for its worker and for no active job). Roles start again with their own
    command, as a container runtime would; the cancel goes through the API, as an operator's.
    """
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    notes = faults.restart_dead_roles()
    cancelled = faults.cancel_active()
    if notes or cancelled:
        print(f"\n{request.node.name}: started again {notes}; cancelled its jobs {cancelled}")
