"""Tier 1: every supported variant renders into clean, parseable, lint-free files."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml
from support.params import supported_params
from support.rendering import render, rendered_answers, run
from support.variants import COPIER_YML, TEMPLATE_ROOT, UNSUPPORTED, copier_defaults

RUFF_VERSION = "0.17.6"
# Folders a rendered project never ships: tools create them after the render.
GENERATED_FOLDERS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
# `{{`, `{%` and `{#` left in a file mean Jinja did not render it (or rendered it twice).
# `${{` is GitHub Actions' own expression syntax and the only literal allowed.
LEFTOVER_JINJA = re.compile(r"(?<!\$)\{\{|\{%|\{#")
COPIER_CLI = ["uv", "run", "copier", "copy", "--defaults", "--vcs-ref", "HEAD"]
SECRET_WORDS = ("password", "secret", "token", "key")


def project_files(project: Path) -> list[Path]:
    """Return every file copier wrote, without tool caches and virtual environments."""
    return sorted(
        path
        for path in project.rglob("*")
        if path.is_file() and not GENERATED_FOLDERS.intersection(path.relative_to(project).parts)
    )


def text_of(path: Path) -> str | None:
    """Return a file's text, or None for a binary file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def effective_answers(project: Path, answers: dict) -> dict:
    """Return copier.yml's literal defaults overridden by the variant's and the recorded answers."""
    return {**copier_defaults(), **rendered_answers(project), **answers}


@supported_params()
def test_variant_leaves_no_unrendered_jinja(variant, rendered):
    """No rendered text file contains `{{`, `{%` or `{#`."""
    project = rendered(variant)
    leftovers = []
    for path in project_files(project):
        text = text_of(path)
        for number, line in enumerate((text or "").splitlines(), start=1):
            if LEFTOVER_JINJA.search(line):
                leftovers.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    assert project_files(project), f"{variant.id} rendered no file"
    assert not leftovers, "unrendered Jinja:\n" + "\n".join(leftovers)


@supported_params()
def test_no_file_name_keeps_a_template_suffix_or_jinja(variant, rendered):
    """No rendered file name ends in .jinja or contains `{{`."""
    project = rendered(variant)
    bad = [
        str(path.relative_to(project))
        for path in project_files(project)
        if path.name.endswith(".jinja") or "{{" in str(path.relative_to(project))
    ]
    assert not bad, f"file names left unrendered: {bad}"


@supported_params()
def test_every_yaml_file_parses(variant, rendered):
    """Every *.yaml and *.yml file parses, each document of a multi-document file included."""
    project = rendered(variant)
    yaml_files = [path for path in project_files(project) if path.suffix in {".yaml", ".yml"}]
    errors = []
    for path in yaml_files:
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as error:
            errors.append(f"{path.relative_to(project)}: {error}")
    assert yaml_files, "no YAML file rendered (not even .copier-answers.yml)"
    assert not errors, "\n".join(errors)


@supported_params()
def test_every_toml_file_parses(variant, rendered):
    """Every *.toml file parses, pyproject.toml first of all."""
    project = rendered(variant)
    toml_files = [path for path in project_files(project) if path.suffix == ".toml"]
    errors = []
    for path in toml_files:
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            errors.append(f"{path.relative_to(project)}: {error}")
    assert project / "pyproject.toml" in toml_files
    assert not errors, "\n".join(errors)


@supported_params()
def test_answers_file_says_do_not_edit_and_records_the_answers(variant, rendered):
    """The answers file starts with a do-not-edit comment and records each answer given."""
    project = rendered(variant)
    text = (project / ".copier-answers.yml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(re.search(r"(never|do not|don't) edit", line, re.IGNORECASE) for line in header), (
        f"no do-not-edit comment in the answers file:\n{text}"
    )
    recorded = rendered_answers(project)
    assert recorded["_src_path"], "the answers file does not say which template made it"
    for name, value in variant.answers.items():
        assert recorded.get(name) == value, f"{name} recorded as {recorded.get(name)!r}"


@supported_params()
def test_answers_file_holds_no_secret_and_no_computed_value(variant, rendered):
    """No key of the answers file looks like a secret; computed values are not stored."""
    recorded = rendered_answers(rendered(variant))
    secret_looking = [key for key in recorded if any(w in key.lower() for w in SECRET_WORDS)]
    computed = [
        name
        for name, spec in COPIER_YML.items()
        if isinstance(spec, dict) and spec.get("when") is False
    ]
    assert not secret_looking, f"secret-looking answers stored: {secret_looking}"
    assert computed, "copier.yml defines no computed value; update this test"
    assert not set(computed) & set(recorded), "computed values leaked into the answers file"


def switched_paths(package: str) -> dict[str, list[str]]:
    """Map each yes/no question to the files it adds to the project."""
    return {
        "use_flower": [f"src/{package}/flower.py"],
        "use_beat": [f"src/{package}/beat.py"],
        "use_compose": ["compose.yaml"],
        "use_kubernetes": ["deploy/kubernetes"],
    }


@supported_params()
def test_optional_files_follow_the_answers(variant, rendered):
    """Each optional file exists exactly when its question is answered yes."""
    project = rendered(variant)
    answers = effective_answers(project, variant.answers)
    wrong = []
    for question, paths in switched_paths(answers["package_name"]).items():
        for relative in paths:
            if (project / relative).exists() != bool(answers[question]):
                wrong.append(f"{relative} with {question}={answers[question]}")
    assert (project / "src" / answers["package_name"] / "__init__.py").is_file()
    assert not wrong, "optional files do not follow the answers: " + ", ".join(wrong)


def ruff(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the template's pinned ruff (root dev group) in a rendered project."""
    return run([sys.executable, "-m", "ruff", *arguments], cwd=cwd, timeout=120)


def test_ruff_is_the_pinned_version():
    """The ruff that lints rendered projects is the pinned one."""
    assert ruff("--version", cwd=TEMPLATE_ROOT).stdout.split() == ["ruff", RUFF_VERSION]


@supported_params()
def test_rendered_project_passes_ruff_check(variant, rendered):
    """`ruff check` finds nothing, with the rendered project's own configuration."""
    project = rendered(variant)
    assert "ruff" in tomllib.loads((project / "pyproject.toml").read_text()).get("tool", {}), (
        "the rendered pyproject.toml has no [tool.ruff] configuration"
    )
    ruff("check", "--no-cache", ".", cwd=project)


@supported_params()
def test_rendered_project_is_ruff_formatted(variant, rendered):
    """`ruff format --check` reports no file to reformat."""
    ruff("format", "--check", "--no-cache", ".", cwd=rendered(variant))


@pytest.mark.parametrize("variant", UNSUPPORTED, ids=[v.id for v in UNSUPPORTED])
def test_unsupported_answers_fail_with_their_message(variant, tmp_path):
    """Copier refuses each unsupported variant with a message saying what to change."""
    destination = tmp_path / "service"
    assert variant.message, f"{variant.id} has no expected message"
    with pytest.raises(ValueError, match=re.escape(variant.message)) as refused:
        render(variant.answers, destination)
    assert "Validation error for question" in str(refused.value)
    assert not destination.exists() or not any(destination.iterdir()), "files written anyway"


def after_copy_message(destination: Path) -> str:
    """Render copier.yml's after-copy message for the default answers."""
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        COPIER_YML["_message_after_copy"]
    )
    return template.render(**copier_defaults(), _copier_conf={"dst_path": destination})


def test_copier_cli_copies_without_trust_and_prints_next_steps(tmp_path):
    """`copier copy --defaults` needs no --trust and prints the after-copy message."""
    destination = tmp_path / "service"
    completed = run(
        [*COPIER_CLI, str(TEMPLATE_ROOT), str(destination)],
        cwd=TEMPLATE_ROOT,
        timeout=300,
    )
    output = completed.stdout + completed.stderr
    missing = [
        line.strip()
        for line in after_copy_message(destination).splitlines()
        if line.strip() and line.strip() not in output
    ]
    assert (destination / "pyproject.toml").is_file()
    assert (destination / ".copier-answers.yml").is_file()
    assert not missing, f"after-copy message lines not printed: {missing}\n{output}"


@supported_params()
def test_generated_ci_workflow_matches_the_github_workflow_schema(variant, rendered):
    """check-jsonschema accepts the service's own .github/workflows/ci.yml."""
    workflow = rendered(variant) / ".github" / "workflows" / "ci.yml"
    checker = str(Path(sys.executable).parent / "check-jsonschema")
    schema = ["--builtin-schema", "vendor.github-workflows"]
    run([checker, *schema, str(workflow)], cwd=workflow.parent)
