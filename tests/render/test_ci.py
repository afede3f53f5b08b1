"""CI, .ci/run and README.md run and describe the same tests the template has."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from support.variants import COPIER_YML, SUPPORTED, TEMPLATE_ROOT

WORKFLOW = TEMPLATE_ROOT / ".github" / "workflows" / "template.yml"
CI_RUN = TEMPLATE_ROOT / ".ci" / "run"
README = TEMPLATE_ROOT / "README.md"
TEST_COMMAND = "uv run pytest"
COLLECT = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]


def tool(name: str) -> str:
    """Return the path of a console script of the template's dev group."""
    return str(Path(sys.executable).parent / name)


def readme_code_lines() -> list[str]:
    """Return the lines inside README.md's fenced code blocks."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_workflow_matches_the_github_workflow_schema():
    """check-jsonschema accepts .github/workflows/template.yml as a GitHub workflow."""
    completed = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_workflow_matrix_is_read_from_the_variant_list():
    """The matrix job builds its variants from `python tests/variants.py` via fromJSON."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    lister = jobs["variants"]
    assert any("tests/variants.py" in step.get("run", "") for step in lister["steps"])
    matrix = jobs["variant"]["strategy"]["matrix"]["variant"]
    assert matrix == "${{ fromJSON(needs.variants.outputs.ids) }}"
    commands = " ".join(step.get("run", "") for step in jobs["variant"]["steps"])
    assert 'uv run pytest -m "render or project" -k "[$VARIANT]"' in commands


def test_workflow_jobs_have_the_servers_the_tests_use():
    """Each testing job runs Redis, PostgreSQL (trust) and RabbitMQ on the ports the tests use."""
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    for name in ("variant", "tiers"):
        services = jobs[name]["services"]
        assert services["redis"]["image"] == "redis:7"
        assert "6379:6379" in services["redis"]["ports"]
        assert services["postgres"]["image"] == "postgres:16"
        assert services["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
        assert "5432:5432" in services["postgres"]["ports"]
        assert services["rabbitmq"]["image"] == "rabbitmq:3-management"
        assert "5672:5672" in services["rabbitmq"]["ports"]


@pytest.mark.parametrize("variant", SUPPORTED, ids=[v.id for v in SUPPORTED])
def test_ci_selection_picks_exactly_one_variants_tests(variant):
    """`-k "[<id>]"`, as CI passes it, selects that variant's render and project tests only."""
    completed = subprocess.run(
        [*COLLECT, "-m", "render or project", "-k", f"[{variant.id}]", "tests"],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    selected = [line for line in completed.stdout.splitlines() if "::" in line]
    assert selected, f"-k [{variant.id}] selects no test"
    others = [node for node in selected if not node.endswith(f"[{variant.id}]")]
    assert not others, f"-k [{variant.id}] also selects {others}"
    assert any(node.startswith("tests/project/test_project.py::") for node in selected)


def test_ci_run_is_valid_bash_and_runs_the_readme_test_command():
    """.ci/run parses as bash and its one pytest call is the README's `uv run pytest`."""
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True, timeout=30)
    calls = [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if "pytest" in line and not line.lstrip().startswith("#") and "step " not in line
    ]
    assert len(calls) == 1, calls
    arguments = calls[0].split(TEST_COMMAND, 1)[1].split()
    assert all(argument.startswith("<") for argument in arguments), calls[0]
    assert TEST_COMMAND in readme_code_lines()


def test_readme_lists_every_question_of_copier_yml():
    """README.md's question table has one row per question copier.yml asks, and no other."""
    questions = {
        name
        for name, spec in COPIER_YML.items()
        if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
    }
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", README.read_text(), re.MULTILINE))
    markers = tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    tiers = {line.split(":")[0] for line in markers["ini_options"]["markers"]}
    documented = rows - tiers
    assert documented == questions


def test_readme_generate_command_pins_the_tested_copier():
    """The README generates with the copier version the tests use, without --trust."""
    pyproject = tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())
    pinned = next(d for d in pyproject["dependency-groups"]["dev"] if d.startswith("copier=="))
    commands = [line for line in readme_code_lines() if " copier copy " in line]
    assert commands == [f"uvx --from {pinned} copier copy <template-url-or-path> my-service"]
    assert "--trust" not in commands[0]


def test_readme_tier_table_names_every_pytest_marker():
    """README.md explains each marker pyproject.toml declares."""
    pyproject = tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())
    markers = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", README.read_text(), re.MULTILINE))
    assert markers <= rows


def test_readme_single_variant_example_names_a_supported_variant():
    """The README's one-variant command uses an id `python tests/variants.py` prints."""
    examples = re.findall(r'-k "\[([^\]]+)\]"', README.read_text())
    assert examples
    assert set(examples) <= {variant.id for variant in SUPPORTED}
