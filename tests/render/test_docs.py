"""The documentation builds strictly and cannot drift from the generated service's code."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from support.variants import SUPPORTED, TEMPLATE_ROOT

MKDOCS_YML = TEMPLATE_ROOT / "mkdocs.yml"
DOCS = TEMPLATE_ROOT / "docs"
SETTINGS_PAGE = DOCS / "settings-profile.md"
BROKERS = ("redis", "rabbitmq")
# The hard limit the settings page's worked example uses.
WORKED_EXAMPLE_LIMIT = 300


def nav_pages(nav: list) -> set[str]:
    """Return every page path named in an mkdocs nav, at any depth."""
    pages: set[str] = set()
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages |= nav_pages(value)
        else:
            pages.add(value)
    return pages


def load_profile(project: Path) -> ModuleType:
    """Import the rendered service's celery/profile.py from its file (it needs only kombu)."""
    (path,) = project.glob("src/*/celery/profile.py")
    spec = importlib.util.spec_from_file_location("rendered_celery_profile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def profile(rendered) -> ModuleType:
    """The settings profile of the default variant, as rendered."""
    (default,) = [variant for variant in SUPPORTED if variant.id == "defaults"]
    return load_profile(rendered(default))


def mentioned(name: str, text: str) -> bool:
    """Whether the page names a setting as code: `name` or `name: value`."""
    return re.search(rf"`{re.escape(name)}(`|:)", text) is not None


def test_site_builds_with_mkdocs_strict(tmp_path):
    """Broken links, missing pages and bad anchors fail the build."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(MKDOCS_YML),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_page_is_in_the_nav():
    """A page left out of mkdocs.yml's nav is unreachable from the site's menu."""
    config = yaml.safe_load(MKDOCS_YML.read_text())
    listed = nav_pages(config["nav"])
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    missing = sorted(pages - listed)
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"


@pytest.mark.parametrize("broker", BROKERS)
def test_settings_page_names_every_profile_setting(profile, broker):
    """Every key of hardened_settings(broker), and of its nested options, is on the page."""
    text = SETTINGS_PAGE.read_text()
    settings = profile.hardened_settings(broker)
    names = set(settings)
    for value in settings.values():
        if isinstance(value, dict):
            names |= set(value)
    missing = sorted(name for name in names if not mentioned(name, text))
    assert not missing, f"docs/settings-profile.md does not mention {missing} ({broker})"


def test_settings_page_worked_example_matches_the_formulas(profile):
    """The derived values for a 300 s hard limit are the ones the code computes."""
    text = SETTINGS_PAGE.read_text()
    limit = WORKED_EXAMPLE_LIMIT
    for value in (
        profile.soft_time_limit(limit),
        profile.max_countdown(limit),
        profile.visibility_timeout(limit),
        profile.grace_period_seconds(limit),
    ):
        assert f"**{value} s**" in text, f"worked example lacks {value} s"
    redis = profile.hardened_settings("redis", limit)
    visibility = redis["broker_transport_options"]["visibility_timeout"]
    assert f"`visibility_timeout: {visibility}`" in text
