"""The update path across the move of the Celery modules to celery/ and the example to jobs/.

The clone is a clone of this repository, history included: LAST_BEFORE_MOVE, the last commit
of the old layout (`job_store.py`, `tasks/jobs.py`, Job in `models.py`), is tagged 0.1.0; the
template's working tree (uncommitted changes included) is committed on top and tagged 0.2.0.
A service generated from 0.1.0 is committed, edited by its owner, and updated to 0.2.0.

What Copier 9 does (its update re-applies the owner's diff file by file, by path; it follows
no rename):
- a moved module the owner edited (`job_store.py` -> `jobs/store.py`): the old file is
  deleted, edit and all, because the new template has no file at that path; the new file is
  the template's; no conflict marker, no `.rej`, nothing unmerged. The owner sees the edit only
  as the deletion in `git status` / `git diff` of the update (and in the commit before it), and
  carries it over by hand;
- a split module the owner edited (Job's columns move from `models.py` to `jobs/models.py`):
  the edit is marked inline in `models.py`, the path the owner knows, as an unmerged conflict
  that the generated CI and pre-commit refuse.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support.rendering import rendered_answers
from support.variants import TEMPLATE_ROOT

from .clone import commit, copy_working_tree, generate, git, replace_once, update

pytestmark = pytest.mark.timeout(600)

# The last commit before the move: its template has the old, flat layout.
LAST_BEFORE_MOVE = "43ad701"
OLD_LAYOUT, MOVED = "0.1.0", "0.2.0"
PACKAGE = "example_service"
# The owner's edits: a setting added to the job store, a column added to the Job model.
STORE_LINE = "OWNER_PAGE_LIMIT = 7  # the owner's setting"
ERROR_COLUMN = "    error: Mapped[str | None] = mapped_column(String(500), default=None)\n"
OWNER_COLUMN = "    priority: Mapped[int] = mapped_column(default=0)  # the owner's column\n"
CONFLICT_BLOCK = re.compile(
    r"^<<<<<<< before updating\n(?P<ours>.*?)^=======\n(?P<theirs>.*?)^>>>>>>> after updating\n",
    re.MULTILINE | re.DOTALL,
)


@pytest.fixture(scope="module")
def moved_template_repo(tmp_path_factory) -> Path:
    """A clone of this repository: the old layout tagged 0.1.0, the working tree 0.2.0."""
    repo = tmp_path_factory.mktemp("template-history") / "copier-flask-celery"
    # --no-checkout: the work tree is filled with the template's working tree below.
    git(
        "clone",
        "--quiet",
        "--no-checkout",
        "--no-tags",
        str(TEMPLATE_ROOT),
        str(repo),
        cwd=repo.parent,
    )
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{LAST_BEFORE_MOVE}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, (
        f"commit {LAST_BEFORE_MOVE} (the last one before the celery/ and jobs/ move) is not in "
        f"the clone of {TEMPLATE_ROOT}: this test needs the repository's history "
        "(a shallow checkout lacks it; fetch it, e.g. actions/checkout with fetch-depth: 0)"
    )
    git(
        "tag",
        "--annotate",
        OLD_LAYOUT,
        "--message",
        f"Release {OLD_LAYOUT}",
        LAST_BEFORE_MOVE,
        cwd=repo,
    )
    copy_working_tree(repo)
    commit(repo, "The template's working tree under test: the moved layout")
    git("tag", "--annotate", MOVED, "--message", f"Release {MOVED}", cwd=repo)
    return repo


def test_update_across_the_move_deletes_an_edited_moved_module_and_marks_an_edited_split_one(
    moved_template_repo, tmp_path
):
    """0.1.0 (flat) -> 0.2.0 (celery/, jobs/): a moved module's edit is only in the diff; a split
    module's edit is an inline conflict at its old path."""
    project = generate(moved_template_repo, tmp_path / "service", vcs_ref=OLD_LAYOUT)
    package = project / "src" / PACKAGE
    old_store, new_store = package / "job_store.py", package / "jobs" / "store.py"
    models, job_models = package / "models.py", package / "jobs" / "models.py"
    assert old_store.is_file() and (package / "tasks" / "jobs.py").is_file(), (
        f"release {OLD_LAYOUT} is not the old layout: update this test"
    )
    assert not (package / "celery").exists() and "class Job(Base)" in models.read_text()
    old_store.write_text(old_store.read_text() + f"\n{STORE_LINE}\n")
    replace_once(models, ERROR_COLUMN, ERROR_COLUMN + OWNER_COLUMN)
    commit(project, "Owner: a page limit in the job store, a priority column")

    update(project, vcs_ref=MOVED)  # conflict="inline" is copier's default

    assert rendered_answers(project)["_commit"] == MOVED
    # The new layout arrived; the moved modules' old paths are gone.
    assert new_store.is_file() and (package / "jobs" / "tasks.py").is_file()
    assert (package / "celery" / "profile.py").is_file()
    assert not old_store.exists() and not (package / "tasks" / "jobs.py").exists()

    # 1. The moved module: copier deleted the edited old file and wrote the template's new one;
    # it reports no conflict for it. The edit is in the update's diff, as a deleted line.
    assert STORE_LINE not in new_store.read_text()
    status = git("status", "--porcelain", "--", "src", cwd=project).stdout.splitlines()
    assert f" D src/{PACKAGE}/job_store.py" in status, status
    removed = git("diff", "HEAD", "--", f"src/{PACKAGE}/job_store.py", cwd=project).stdout
    assert f"-{STORE_LINE}\n" in removed, removed
    assert STORE_LINE in git("show", f"HEAD:src/{PACKAGE}/job_store.py", cwd=project).stdout
    assert not list(project.rglob("*.rej")), "copier left .rej files with --conflict inline"
    unmerged = git("ls-files", "--unmerged", cwd=project).stdout
    assert "job_store.py" not in unmerged and "jobs/store.py" not in unmerged, unmerged

    # 2. The split module: the owner's column is inside an inline conflict in models.py, the
    # file the owner edited; the new jobs/models.py is the template's.
    text = models.read_text()
    # git may split the file into several conflict blocks (the template's models.py changes
    # around the Job class too): the owner's column is on their side of one of them.
    blocks = list(CONFLICT_BLOCK.finditer(text))
    assert any(OWNER_COLUMN in block["ours"] for block in blocks), text
    assert not any("class Job(" in block["theirs"] for block in blocks), text
    assert f"src/{PACKAGE}/models.py" in unmerged, unmerged
    assert f"UU src/{PACKAGE}/models.py" in status, status
    assert "class Job(Base)" in job_models.read_text()
    assert OWNER_COLUMN not in job_models.read_text()
