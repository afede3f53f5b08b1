"""Tier 6: `copier update` from an older tagged version of the template.

Every test works on a throwaway git clone of the template's working tree (uncommitted changes
included) tagged 0.1.0, then given a fix in a generated file and tagged 0.1.1, the way the release
process in docs/upgrading.md tags a release. A service generated from 0.1.0 is committed, edited
the way its owner would, and updated.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from packaging.version import InvalidVersion, Version
from support.rendering import PROJECT_ENV, rendered_answers, run
from support.variants import COPIER_YML, TEMPLATE_ROOT

from .clone import (
    assert_no_conflict_left,
    commit,
    copy_working_tree,
    generate,
    git,
    replace_once,
    update,
)

pytestmark = pytest.mark.timeout(600)

# pre-commit runs the generated project's local hooks: nothing is fetched from a hook repository.
PRE_COMMIT = ["uvx", "--from", "pre-commit==4.7.0", "pre-commit"]
SYNC_TIMEOUT = 600
CHECK_TIMEOUT = 180

OLD, NEW = "0.1.0", "0.1.1"
# The default answers: package example_service, slug example-service, queues default and jobs.
PACKAGE = "example_service"
SLUG = "example-service"
FAST_TESTS = [f"tests/test_{name}.py" for name in ("celery_profile", "celery_routing", "settings")]

# The release 0.1.1 made in the clone: a changed default and a new comment in gunicorn_conf.py.
GUNICORN_TEMPLATE = "template/src/{{package_name}}/gunicorn_conf.py.jinja"
GRACEFUL_LINE = re.compile(
    r'^graceful_timeout = int\(os\.environ\.get\("WEB_GRACEFUL_TIMEOUT", "(\d+)"\)\)$', re.MULTILINE
)
FIX_COMMENT = "# Release 0.1.1: SIGTERM leaves a request 25 s, well inside the pod's grace period."
FIXED_LINE = 'graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "25"))'
CONFLICT_BLOCK = re.compile(
    r"^<<<<<<< [^\n]*\n(?P<ours>.*?)^(?:\|\|\|\|\|\|\| [^\n]*\n.*?)?=======\n"
    r"(?P<theirs>.*?)^>>>>>>> [^\n]*\n",
    re.MULTILINE | re.DOTALL,
)

# A task module the service's owner adds; ruff-clean under the generated project's rules.
REPORTS_MODULE = f'''"""Report tasks the service's owner added after generating the service."""

from celery import shared_task

from {PACKAGE}.celery.task_base import ServiceTask


@shared_task(base=ServiceTask, bind=True, ignore_result=False)
def build_report(self, name: str) -> dict[str, str]:
    """Return the report's name: a stand-in for real work."""
    return {{"report": name, "hostname": str(self.request.hostname)}}
'''


def release_fix(template: Path) -> None:
    """Make release 0.1.1's fix: a new default and a comment in the generated gunicorn_conf.py."""
    path = template / GUNICORN_TEMPLATE
    text = path.read_text()
    match = GRACEFUL_LINE.search(text)
    assert match, f"{GUNICORN_TEMPLATE} has no graceful_timeout line: update this test"
    assert match.group(0) != FIXED_LINE, "the template already has the test's fix: update this test"
    path.write_text(f"{text[: match.start()]}{FIX_COMMENT}\n{FIXED_LINE}{text[match.end() :]}")


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """A git clone of the working tree: 0.1.0 is the tree as it is, 0.1.1 adds a fix."""
    repo = tmp_path_factory.mktemp("template") / "copier-flask-celery"
    repo.mkdir()
    copy_working_tree(repo)
    git("init", "--quiet", "--initial-branch", "main", cwd=repo)
    commit(repo, "The template's working tree under test")
    git("tag", "--annotate", OLD, "--message", f"Release {OLD}", cwd=repo)
    release_fix(repo)
    commit(repo, "gunicorn: a shorter graceful timeout")
    git("tag", "--annotate", NEW, "--message", f"Release {NEW}", cwd=repo)
    return repo


def make_user_edits(project: Path) -> None:
    """Edit the service the way its owner would: a new task and its route, a changed default."""
    package = project / "src" / PACKAGE
    (package / "tasks" / "reports.py").write_text(REPORTS_MODULE)
    replace_once(
        package / "celery" / "apps.py",
        f'    "{PACKAGE}.tasks.diagnostics",\n',
        f'    "{PACKAGE}.tasks.diagnostics",\n    "{PACKAGE}.tasks.reports",\n',
    )
    noop_route = f'    "{PACKAGE}.tasks.diagnostics.noop": {{"queue": DEFAULT_QUEUE}},\n'
    replace_once(
        package / "celery" / "routing.py",
        noop_route,
        f'{noop_route}    "{PACKAGE}.tasks.reports.build_report": {{"queue": JOB_QUEUE}},\n',
    )
    replace_once(package / "gunicorn_conf.py", '"WEB_WORKERS", "2"', '"WEB_WORKERS", "3"')
    # A generated file the owner does not want: an update must not bring it back.
    (project / "deploy" / "kubernetes" / "README.md").unlink()
    commit(project, "Add report tasks, three web workers")


def assert_user_edits_kept(project: Path) -> None:
    """The owner's new module, added route and task module, changed default and deletion remain."""
    package = project / "src" / PACKAGE
    assert (package / "tasks" / "reports.py").read_text() == REPORTS_MODULE
    assert f'"{PACKAGE}.tasks.reports",' in (package / "celery" / "apps.py").read_text()
    routing = (package / "celery" / "routing.py").read_text()
    assert f'"{PACKAGE}.tasks.reports.build_report": {{"queue": JOB_QUEUE}},' in routing
    assert '"WEB_WORKERS", "3"' in (package / "gunicorn_conf.py").read_text()
    assert not (project / "deploy" / "kubernetes" / "README.md").exists(), (
        "the update brought back a file the owner deleted"
    )


def check_update(project: Path, *options: str) -> subprocess.CompletedProcess:
    """Run `copier check-update` (the CLI of the pinned copier) on the service."""
    return subprocess.run(
        [sys.executable, "-m", "copier", "check-update", *options, str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def ci_conflict_step(project: Path) -> str:
    """Return the shell command of the generated CI's "Refuse unresolved merge conflicts" step."""
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    steps = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("name") == "Refuse unresolved merge conflicts"
    ]
    assert len(steps) == 1, "the generated CI has no (or two) conflict-refusing steps"
    return steps[0]["run"]


def run_ci_step(command: str, project: Path) -> subprocess.CompletedProcess:
    """Run a CI step's command the way GitHub Actions does (`bash -e {0}`)."""
    return subprocess.run(
        ["bash", "-e", "-c", command], cwd=project, capture_output=True, text=True, timeout=60
    )


def pre_commit(project: Path, *arguments: str, home: Path) -> subprocess.CompletedProcess:
    """Run pre-commit in the service, offline: every hook of its config is local."""
    return subprocess.run(
        [*PRE_COMMIT, *arguments],
        cwd=project,
        env={**run_env(), "PRE_COMMIT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
    )


def run_env() -> dict[str, str]:
    """The environment of a command in the service: its own virtualenv, never the template's."""
    environment = {**os.environ, **PROJECT_ENV}
    environment.pop("VIRTUAL_ENV", None)
    return environment


def module_constant(path: Path, name: str) -> Any:
    """Return the literal value a module assigns to name (read, not imported)."""
    for node in ast.parse(path.read_text()).body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} assigns no {name}")


def test_update_brings_the_fix_and_keeps_the_owners_edits(template_repo, tmp_path):
    """0.1.0 → latest tag: the fix arrives, edits and owned files stay, the checks still pass."""
    project = generate(template_repo, tmp_path / "service", vcs_ref=OLD)
    # The owner installs the service (uv.lock is committed), makes .env and edits the code.
    run(["uv", "sync"], cwd=project, env=PROJECT_ENV, timeout=SYNC_TIMEOUT)
    shutil.copy(project / ".env.example", project / ".env")
    (project / ".env").write_text((project / ".env").read_text() + "SECRET_KEY=owner-secret\n")
    make_user_edits(project)
    lock, env_file = (project / "uv.lock").read_bytes(), (project / ".env").read_bytes()

    # `copier check-update` sees the newer tag, in plain text, JSON and as exit status 2.
    plain = check_update(project)
    assert plain.returncode == 0, plain.stderr
    assert f"Current version is {OLD}, latest version is {NEW}." in plain.stdout, plain.stdout
    as_json = check_update(project, "--output-format", "json")
    assert json.loads(as_json.stdout) == {
        "update_available": True,
        "current_version": OLD,
        "latest_version": NEW,
    }
    assert check_update(project, "--quiet").returncode == 2

    update(project)  # no vcs_ref: copier takes the latest PEP 440 tag

    conf = (project / "src" / PACKAGE / "gunicorn_conf.py").read_text()
    assert f"{FIX_COMMENT}\n{FIXED_LINE}\n" in conf, f"the 0.1.1 fix did not arrive:\n{conf}"
    assert_user_edits_kept(project)
    assert_no_conflict_left(project)
    assert (project / "uv.lock").read_bytes() == lock, "the update changed the owner's uv.lock"
    assert (project / ".env").read_bytes() == env_file, "the update changed the owner's .env"
    assert rendered_answers(project)["_commit"] == NEW
    assert check_update(project).stdout.strip() == "Project is up-to-date!"

    # The generated project's own checks: as its CI runs them, plus its pre-commit hooks.
    commit(project, f"Update to copier-flask-celery {NEW}")
    run(["uv", "sync", "--locked"], cwd=project, env=PROJECT_ENV, timeout=SYNC_TIMEOUT)
    run(["uv", "run", "ruff", "check"], cwd=project, env=PROJECT_ENV, timeout=CHECK_TIMEOUT)
    run(["uv", "run", "ruff", "format", "--check"], cwd=project, env=PROJECT_ENV)
    assert run_ci_step(ci_conflict_step(project), project).returncode == 0
    hooks = pre_commit(project, "run", "--all-files", home=tmp_path / "pre-commit")
    assert hooks.returncode == 0, hooks.stdout + hooks.stderr
    suite = run(
        ["uv", "run", "pytest", "-q", "-p", "no:cacheprovider", *FAST_TESTS],
        cwd=project,
        env=PROJECT_ENV,
        timeout=SYNC_TIMEOUT,
    )
    summary = suite.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary


def test_conflicting_edit_leaves_inline_markers_that_ci_and_pre_commit_refuse(
    template_repo, tmp_path
):
    """The owner changed the line the fix changes: markers, refused until resolved."""
    project = generate(template_repo, tmp_path / "service", vcs_ref=OLD)
    conf = project / "src" / PACKAGE / "gunicorn_conf.py"
    owners_line = 'graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "40"))'
    conf.write_text(GRACEFUL_LINE.sub(owners_line, conf.read_text()))
    commit(project, "gunicorn: a longer graceful timeout")

    update(project, vcs_ref=NEW)  # conflict="inline" is copier's default

    text = conf.read_text()
    assert "<<<<<<< before updating\n" in text and ">>>>>>> after updating\n" in text, text
    block = CONFLICT_BLOCK.search(text)
    assert block, text
    assert owners_line in block["ours"] and FIXED_LINE in block["theirs"], text
    assert not list(project.rglob("*.rej")), "copier left .rej files with --conflict inline"
    assert "gunicorn_conf.py" in git("ls-files", "--unmerged", cwd=project).stdout

    # The generated CI step and the pre-commit hook both refuse the conflicted tree.
    step = ci_conflict_step(project)
    refused = run_ci_step(step, project)
    assert refused.returncode != 0, "the CI step passed with conflict markers in the tree"
    assert f"src/{PACKAGE}/gunicorn_conf.py" in refused.stdout, refused.stdout
    home = tmp_path / "pre-commit"
    hook = pre_commit(project, "run", "check-merge-conflict", "--all-files", home=home)
    assert hook.returncode != 0, hook.stdout + hook.stderr
    assert f"src/{PACKAGE}/gunicorn_conf.py" in hook.stdout, hook.stdout

    # Resolve as docs/upgrading.md says: keep the template's comment and the owner's value.
    resolved = text[: block.start()] + block["theirs"] + text[block.end() :]
    conf.write_text(resolved.replace(FIXED_LINE, owners_line))
    git("add", "--", f"src/{PACKAGE}/gunicorn_conf.py", cwd=project)

    assert run_ci_step(step, project).returncode == 0
    hook = pre_commit(project, "run", "check-merge-conflict", "--all-files", home=home)
    assert hook.returncode == 0, hook.stdout + hook.stderr
    assert_no_conflict_left(project)
    assert f"{FIX_COMMENT}\n{owners_line}\n" in conf.read_text()
    commit(project, f"Update to copier-flask-celery {NEW}")
    assert rendered_answers(project)["_commit"] == NEW


def ruff_check(project: Path) -> None:
    """Lint the service with the template's pinned ruff (the same version the service pins)."""
    run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project, timeout=120)


def test_answering_no_flower_on_update_removes_flower_files(template_repo, tmp_path):
    """`copier update --vcs-ref=:current: --data use_flower=false` removes every Flower part."""
    project = generate(template_repo, tmp_path / "service", vcs_ref=OLD)
    flower_files = [
        f"src/{PACKAGE}/flower.py",
        "tests/test_flower.py",
        "deploy/kubernetes/components/flower",
        f"deploy/kubernetes/components/network-policies/{SLUG}-flower-networkpolicy.yaml",
    ]
    missing = [name for name in flower_files if not (project / name).exists()]
    assert not missing, f"release {OLD} did not generate {missing}: update this test"

    update(project, vcs_ref=copier.VcsRef.CURRENT, data={"use_flower": False})

    left = [name for name in flower_files if (project / name).exists()]
    assert not left, f"Flower files left after use_flower=false: {left}"
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert "flower" not in compose["services"]
    assert "flower" not in (project / "pyproject.toml").read_text()
    for overlay in ("dev", "prod"):
        kustomization = project / "deploy" / "kubernetes" / "overlays" / overlay
        assert "components/flower" not in (kustomization / "kustomization.yaml").read_text()
    answers = rendered_answers(project)
    assert answers["use_flower"] is False
    assert answers["_commit"] == OLD, ":current: must not move the service to another release"
    assert_no_conflict_left(project)
    ruff_check(project)


def test_adding_a_queue_on_update_adds_its_worker_and_keeps_edits(template_repo, tmp_path):
    """`copier update --data 'queues=[default, jobs, reports]'`: routing, compose, Kubernetes."""
    project = generate(template_repo, tmp_path / "service", vcs_ref=OLD)
    make_user_edits(project)

    update(project, vcs_ref=NEW, data={"queues": ["default", "jobs", "reports"]})

    routing = project / "src" / PACKAGE / "celery" / "routing.py"
    assert module_constant(routing, "QUEUES") == ("default", "jobs", "reports")
    assert module_constant(routing, "JOB_QUEUE") == "jobs"
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    workers = sorted(name for name in compose["services"] if name.startswith("worker-"))
    assert workers == ["worker-default", "worker-jobs", "worker-reports"]
    base = project / "deploy" / "kubernetes" / "base"
    deployment = base / f"{SLUG}-worker-reports-deployment.yaml"
    assert deployment.is_file()
    assert (base / f"{SLUG}-worker-reports-poddisruptionbudget.yaml").is_file()
    resources = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    assert deployment.name in resources
    keda = project / "deploy" / "kubernetes" / "components" / "keda-autoscaling"
    assert (keda / f"{SLUG}-worker-reports-scaledobject.yaml").is_file()
    assert rendered_answers(project)["queues"] == ["default", "jobs", "reports"]
    assert rendered_answers(project)["_commit"] == NEW
    assert FIXED_LINE in (project / "src" / PACKAGE / "gunicorn_conf.py").read_text()
    assert_user_edits_kept(project)
    assert_no_conflict_left(project)
    ruff_check(project)


def changelog_sections() -> list[tuple[str, str]]:
    """Return CHANGELOG.md's `## ` sections as (heading, body), in file order."""
    text = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_changelog_releases_are_pep440_and_the_newest_is_the_template_version():
    """CHANGELOG.md: Unreleased first, then PEP 440 releases, newest = pyproject's version."""
    sections = changelog_sections()
    assert sections and sections[0][0] == "Unreleased", "CHANGELOG.md must start with Unreleased"
    releases = []
    for heading, body in sections[1:]:
        try:
            releases.append(Version(heading))
        except InvalidVersion:
            raise AssertionError(f"CHANGELOG.md heading {heading!r} is not PEP 440") from None
        assert str(releases[-1]) == heading, f"write {heading!r} as {releases[-1]}"
        for part in ("**In a generated service**", "**By hand**", "**Migrations**"):
            assert part in body, f"release {heading} does not say {part}"
        if "_migrations" not in COPIER_YML:
            assert re.search(r"\*\*Migrations\*\*: none\.", body), (
                f"release {heading} names a migration, but copier.yml has no _migrations"
            )
    assert releases, "CHANGELOG.md names no release"
    assert releases == sorted(releases, reverse=True), "releases must be listed newest first"
    project = tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())["project"]
    assert Version(project["version"]) == releases[0], (
        f"pyproject.toml says {project['version']}, CHANGELOG.md's newest release is {releases[0]}"
    )
