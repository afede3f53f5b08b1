"""Property test over the copier questions: every answer is refused with a message or renders."""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.rendering import render, run_with_service_source

IDENTIFIER_ALPHABET = "abcxyz_019-. Aé"
names = st.text(alphabet=IDENTIFIER_ALPHABET, min_size=0, max_size=14)
queue_lists = st.lists(
    st.one_of(st.sampled_from(["default", "jobs", "celery", "reports"]), names),
    min_size=0,
    max_size=4,
)
answers = st.fixed_dictionaries(
    {},
    optional={
        "package_name": names,
        "queues": queue_lists,
        "task_time_limit": st.integers(min_value=-5, max_value=100_000),
        "worker_concurrency": st.integers(min_value=-1, max_value=70),
        "broker": st.sampled_from(["redis", "rabbitmq"]),
        "database": st.sampled_from(["postgresql", "sqlite"]),
        "use_kubernetes": st.booleans(),
    },
)


def _render_or_error(data: dict, destination: Path) -> str | None:
    """Render; return None on success, or copier's validation message."""
    try:
        render(data, destination)
    except ValueError as error:
        return str(error)
    return None


def _check_rendered(project: Path) -> None:
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable))
    assert ruff, "ruff is in the template's dev group"
    for command in ([ruff, "check", "-q", "."], [ruff, "format", "--check", "-q", "."]):
        result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    for path in project.rglob("*.py"):
        py_compile.compile(str(path), doraise=True)
    package = next((project / "src").iterdir()).name
    # The modules Flower and the deployment tooling load need only kombu.
    code = f"import {package}.celery.routing, {package}.celery.profile, {package}.entrypoints"
    result = run_with_service_source(project, ["-c", code])
    assert result.returncode == 0, result.stderr


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(data=answers)
def test_every_answer_is_refused_with_a_message_or_renders_a_clean_service(data):
    with tempfile.TemporaryDirectory() as scratch:
        destination = Path(scratch) / "service"
        message = _render_or_error(data, destination)
        event("rendered" if message is None else "refused")
        if message is None:
            _check_rendered(destination)
        else:
            assert "Validation error for question" in message
            # The reason after the question name says what to change.
            reason = message.split(":", 1)[1].strip()
            assert len(reason) > 20, message
