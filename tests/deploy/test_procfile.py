"""Tier 3: the local run (`make run`: the Procfile under honcho) runs the service's own commands.

The service's `python -m <package>.entrypoints` is the reference, as for compose and Kubernetes.
`make --dry-run` prints what each target would run without running it; `make .env` runs for
real, in a copy of the files it reads.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib

import pytest
from support.params import supported_params
from support.rendering import PROJECT_ENV, rendered_answers

from .helpers import expected_command, service_commands

pytestmark = [pytest.mark.timeout(300), supported_params()]

# honcho's own Procfile grammar (honcho/environ.py): other lines, comments included, are skipped.
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
MAKE_SECONDS = 60
# The tests' environment without the template's virtual environment (uv would use it).
MAKE_ENV = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, **PROJECT_ENV}
# What `make .env` fills in with a fresh random value, per the answers that add the variable.
RANDOM_VARIABLES = {
    "SECRET_KEY": True,
    "DIAGNOSTICS_TOKEN": True,
    "POSTGRES_PASSWORD": "database:postgresql",
    "RABBITMQ_PASSWORD": "broker:rabbitmq",
    "FLOWER_BASIC_AUTH": "use_flower",
}


def procfile(project) -> dict[str, str]:
    """Return {process name: command} as honcho reads the Procfile."""
    processes = {}
    for line in (project / "Procfile").read_text().splitlines():
        if match := PROCFILE_LINE.match(line):
            assert match.group(1) not in processes, f"Procfile names {match.group(1)} twice"
            processes[match.group(1)] = match.group(2)
    return processes


def make(project, *arguments: str) -> subprocess.CompletedProcess:
    """Run make in a project; fail with its output when it fails."""
    completed = subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=project,
        env=MAKE_ENV,
        capture_output=True,
        text=True,
        timeout=MAKE_SECONDS,
    )
    assert completed.returncode == 0, f"make {arguments}: {completed.stdout}{completed.stderr}"
    return completed


def dry_run(project, target: str) -> list[list[str]]:
    """Return the commands `make <target>` runs, as argv lists, assuming .env exists."""
    printed = make(project, "--dry-run", "--assume-old=.env", target).stdout
    return [shlex.split(line) for line in printed.splitlines() if line.strip()]


def env_file(path) -> dict[str, str]:
    """Return the variables of a .env file (comments and blank lines skipped)."""
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def has(answers: dict, condition: bool | str) -> bool:
    """Return whether a RANDOM_VARIABLES condition ("question:value" or a bool answer) holds."""
    if condition is True:
        return True
    name, _, value = condition.partition(":")
    return answers[name] == value if value else bool(answers[name])


def test_procfile_runs_every_role_with_the_service_command(variant, rendered):
    """One Procfile line per long-running role (web, a worker per queue, beat, Flower)."""
    project = rendered(variant)
    commands = service_commands(project)
    processes = procfile(project)
    expected = {"web", *(f"worker-{queue.replace('_', '-')}" for queue in commands["worker"])}
    expected |= {role for role in ("beat", "flower") if role in commands}
    assert set(processes) == expected
    for name, command in processes.items():
        assert shlex.split(command) == expected_command(commands, name), name


def test_make_run_migrates_first_then_starts_the_procfile(variant, rendered):
    """`make run` migrates with .env's variables, then runs `honcho start` (a dev tool)."""
    project = rendered(variant)
    commands = service_commands(project)
    assert dry_run(project, "run") == [
        ["uv", "run", "honcho", "run", *commands["migrate"]],
        ["uv", "run", "honcho", "start"],
    ]
    # The migrations exit: as a Procfile line they would make honcho stop every role.
    assert commands["migrate"] not in [shlex.split(c) for c in procfile(project).values()]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert any(
        re.match(r"honcho\b", requirement) for requirement in pyproject["dependency-groups"]["dev"]
    )


def test_make_targets_run_the_documented_commands(variant, rendered):
    """`make` lists every target; each runs its documented command (up, logs, down: compose)."""
    project = rendered(variant)
    answers = rendered_answers(project)
    package = answers["package_name"]
    targets = {
        "test": [["uv", "run", "pytest"]],
        "doctor": [["uv", "run", "honcho", "run", "python", "-m", f"{package}.doctor"]],
        "update": [["uvx", "--from", "copier==9.19.1", "copier", "update", "--defaults"]],
    }
    if answers["use_compose"]:
        # Flower sits behind its compose profile: `up` names it; `down` stops every profile's.
        flower = ["--profile", "flower"] if answers["use_flower"] else []
        targets |= {
            "up": [["docker", "compose", *flower, "up", "--build", "--wait"]],
            "logs": [["docker", "compose", "logs", "--follow"]],
            "down": [["docker", "compose", *flower, "--profile", "monitoring", "down"]],
        }
    for target, expected in targets.items():
        assert dry_run(project, target) == expected, target
    listed = set(re.findall(r"^  make (\w+)", make(project).stdout, re.MULTILINE))
    assert listed == {"help", "run", *targets}
    readme = (project / "README.md").read_text()
    assert "make run" in readme and "## Run it locally" in readme


def test_make_env_writes_a_local_env_once_with_fresh_secrets(variant, rendered, tmp_path):
    """`make .env`: .env.example's variables, new secrets, SQLite, mode 0600; never overwritten."""
    project = rendered(variant)
    answers = rendered_answers(project)
    made = []
    for copy in (tmp_path / "first", tmp_path / "second"):
        copy.mkdir()
        for name in ("Makefile", ".env.example", ".gitignore"):
            shutil.copy(project / name, copy / name)
        make(copy, ".env")
        made.append(env_file(copy / ".env"))
    first, second = made
    example = env_file(project / ".env.example")
    assert list(first) == list(example), "make .env adds, drops or reorders a variable"
    assert first["DATABASE_URL"] == f"sqlite:///{answers['package_name']}.db"
    for name, condition in RANDOM_VARIABLES.items():
        if has(answers, condition):
            assert len(first[name]) >= 24 and first[name] != second[name], name
    assert "change-me" not in (tmp_path / "first" / ".env").read_text()
    if answers["use_flower"]:
        assert first["FLOWER_BASIC_AUTH"].startswith("admin:")
    env_path = tmp_path / "first" / ".env"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    before = env_path.read_bytes()
    again = make(tmp_path / "first", ".env")
    assert env_path.read_bytes() == before and "up to date" in again.stdout
    # git ignores what the local run writes: .env and the SQLite file (with its WAL files).
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "first", check=True, timeout=30)
    written = [".env", f"{answers['package_name']}.db", f"{answers['package_name']}.db-wal"]
    ignored = subprocess.run(
        ["git", "check-ignore", *written],
        cwd=tmp_path / "first",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ignored.stdout.split() == written
