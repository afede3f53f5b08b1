"""Render the template into a folder, the way `copier copy` does, and run commands in it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import copier
import yaml

from .variants import TEMPLATE_ROOT

# uv finds Python 3.11, 3.12 and 3.13 through pyenv's shims on the test machines.
PROJECT_ENV = {"PYENV_VERSION": "3.11.7:3.12.1:3.13.0"}
SYNC_TIMEOUT = 900
# The service's CI runs checkov pinned in its workflow; the tests run that same pin, isolated.
CHECKOV_PIN = re.compile(r"--from (checkov==[\d.]+) checkov --directory \.$", re.MULTILINE)


def render(answers: dict[str, Any], destination: Path, *, vcs_ref: str = "HEAD") -> Path:
    """Render the working tree of the template (uncommitted changes included) into destination."""
    with warnings.catch_warnings():
        # Copier warns that it copies a dirty working tree: that is what a test wants.
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(TEMPLATE_ROOT),
            str(destination),
            data=answers,
            defaults=True,
            vcs_ref=vcs_ref,
            unsafe=False,
            quiet=True,
        )
    return destination


def rendered_answers(project: Path) -> dict[str, Any]:
    """Return the answers file a rendered project records (the full set, defaults included)."""
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def checkov_command(project: Path) -> list[str]:
    """Return the `uvx ... checkov` command pinned in the project's own CI workflow."""
    pinned = CHECKOV_PIN.search((project / ".github" / "workflows" / "ci.yml").read_text())
    assert pinned, "the service's CI workflow runs no pinned checkov"
    # checkov 3.2 runs on Python 3.12; pyenv provides it on the test machines.
    isolated = ["uvx", "--python", "3.12", "--no-python-downloads"]
    return [*isolated, "--from", pinned.group(1), "checkov"]


def run(command: list[str], cwd: Path, *, timeout: float = 600, env: dict | None = None):
    """Run a command in a rendered project; fail with its output when it fails."""
    merged = {**os.environ, **(env or {})}
    # A rendered project gets its own virtual environment, never the template's.
    merged.pop("VIRTUAL_ENV", None)
    completed = subprocess.run(
        command, cwd=cwd, env=merged, capture_output=True, text=True, timeout=timeout
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed with exit code {completed.returncode} in {cwd}\n"
            f"--- stdout ---\n{completed.stdout[-8000:]}\n"
            f"--- stderr ---\n{completed.stderr[-8000:]}"
        )
    return completed


def copy_project(rendered_project: Path, project: Path) -> Path:
    """Copy a rendered project, so the render tier keeps checking exactly what copier wrote."""
    shutil.copytree(rendered_project, project)
    return project


def uv_sync(project: Path) -> subprocess.CompletedProcess:
    """Run `uv sync` in a project: its own .venv, with the Python its answers ask for."""
    return run(["uv", "sync"], cwd=project, env=PROJECT_ENV, timeout=SYNC_TIMEOUT)


def run_with_service_source(project: Path, arguments: list[str]) -> subprocess.CompletedProcess:
    """Run this interpreter on a rendered project's src/ (its kombu-only modules need no venv)."""
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
