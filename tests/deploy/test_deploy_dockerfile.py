"""Tier 3: one multi-stage, non-root image for every role, hadolint clean."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from support.params import supported_params
from support.rendering import rendered_answers, run

from .helpers import service_commands

pytestmark = pytest.mark.timeout(600)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """Return the Dockerfile's (INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


@supported_params()
def test_hadolint_finds_nothing(variant, rendered):
    """hadolint (the root dev group's binary) reports no rule, at any level."""
    project = rendered(variant)
    hadolint = Path(sys.executable).parent / "hadolint"
    run([str(hadolint), "--failure-threshold", "style", "Dockerfile"], cwd=project)


@supported_params()
def test_image_is_multi_stage_with_uv_and_a_slim_runtime(variant, rendered):
    """uv comes from its image into a builder; the runtime is python:<version>-slim."""
    project = rendered(variant)
    python_version = rendered_answers(project)["python_version"]
    steps = instructions(project / "Dockerfile")
    stages = [arguments for instruction, arguments in steps if instruction == "FROM"]
    assert stages[0].startswith("ghcr.io/astral-sh/uv:")
    assert stages[-1] == f"python:{python_version}-slim AS runtime"
    assert len(stages) >= 3
    runs = " ".join(arguments for instruction, arguments in steps if instruction == "RUN")
    assert "uv sync --locked --no-dev" in runs
    assert "chmod -R g=u /app" in runs


@supported_params()
def test_runtime_is_non_root_and_defaults_to_the_web_command(variant, rendered):
    """A numeric non-root USER in group 0, HOME=/tmp, the venv on PATH, CMD = web command."""
    project = rendered(variant)
    steps = instructions(project / "Dockerfile")
    runtime = steps[max(i for i, (name, _) in enumerate(steps) if name == "FROM") :]
    (user,) = [arguments for name, arguments in runtime if name == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and gid == "0"
    environment = " ".join(arguments for name, arguments in runtime if name == "ENV")
    assert 'PATH="/app/.venv/bin:${PATH}"' in environment
    assert "HOME=/tmp" in environment
    assert not [name for name, _ in steps if name == "ENTRYPOINT"], "the command picks the role"
    (command,) = [arguments for name, arguments in runtime if name == "CMD"]
    assert json.loads(command) == service_commands(project)["web"]


@supported_params()
def test_image_holds_no_secret_and_the_context_excludes_env_files(variant, rendered):
    """No ARG or ENV names a secret; .dockerignore keeps .env, .venv and .git out."""
    project = rendered(variant)
    for name, arguments in instructions(project / "Dockerfile"):
        if name in ("ARG", "ENV"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|_KEY\b", arguments), arguments
    ignored = (project / ".dockerignore").read_text().split()
    assert {".env", ".env.*", ".venv", ".git"} <= set(ignored)
