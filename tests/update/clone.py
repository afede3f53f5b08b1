"""The throwaway git clone the update tier tags, and the owner's side: generate, commit, update.

Every command runs with the tests' own git identity and without signing, so the machine's git
configuration plays no part.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import copier
from support.rendering import run
from support.variants import TEMPLATE_ROOT

# Commits and tags of the tests, independent of the machine's git configuration.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}
GIT = ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
# The marker lines git and copier write, the same pattern as the generated CI step.
CONFLICT_MARKER = re.compile(r"^(<<<<<<< |>>>>>>> )", re.MULTILINE)


def git(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run git with the tests' identity; fail with its output when it fails."""
    return run([*GIT, *arguments], cwd=cwd, timeout=120, env=GIT_IDENTITY)


def commit(project: Path, message: str) -> None:
    """Commit every change of the work tree, as the service's owner would."""
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "--no-verify", "--allow-empty", "--message", message, cwd=project)


def replace_once(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of old in a file; fail if it is not there exactly once."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path} no longer contains {old!r} once: update this test"
    path.write_text(text.replace(old, new))


def copy_working_tree(destination: Path) -> None:
    """Copy the template's tracked and untracked, not ignored, files: what a commit would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = TEMPLATE_ROOT / name
        if not source.is_file():  # deleted in the work tree, not yet committed
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def quiet_copier(function, *arguments: Any, **options: Any) -> None:
    """Call a copier API function without trust; copier's own warnings are not the test's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        function(*arguments, unsafe=False, quiet=True, defaults=True, **options)


def generate(template_repo: Path, destination: Path, *, vcs_ref: str) -> Path:
    """Generate a service from a release with the default answers and commit it."""
    quiet_copier(copier.run_copy, str(template_repo), str(destination), vcs_ref=vcs_ref)
    git("init", "--quiet", "--initial-branch", "main", cwd=destination)
    commit(destination, f"Generated from copier-flask-celery {vcs_ref}")
    return destination


def update(project: Path, **options: Any) -> None:
    """`copier update --defaults` in a committed service (overwrite is what update does)."""
    quiet_copier(copier.run_update, str(project), overwrite=True, **options)


def assert_no_conflict_left(project: Path) -> None:
    """No conflict marker in any tracked file, no .rej file, nothing unmerged in the index."""
    tracked = git("ls-files", "-z", cwd=project).stdout.split("\0")
    marked = []
    for name in filter(None, tracked):
        path = project / name
        if path.is_file() and CONFLICT_MARKER.search(path.read_text(errors="replace")):
            marked.append(name)
    assert not marked, f"conflict markers left in {marked}"
    rejects = [str(path.relative_to(project)) for path in project.rglob("*.rej")]
    assert not rejects, f"rejected hunks left: {rejects}"
    unmerged = git("ls-files", "--unmerged", cwd=project).stdout
    assert not unmerged, f"unmerged paths in the index:\n{unmerged}"
