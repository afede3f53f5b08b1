"""Fixtures shared by every tier of the template's tests, and the one place tiers are marked."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.rendering import render
from support.variants import Variant

TESTS = Path(__file__).resolve().parent


def declared_markers(config: pytest.Config) -> set[str]:
    """Return the marker names pyproject.toml declares."""
    return {line.split(":")[0].strip() for line in config.getini("markers")}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier: the folder it is in, tests/<tier>/ (before -m selects)."""
    tiers = declared_markers(config)
    for item in items:
        tier = item.path.resolve().relative_to(TESTS).parts[0]
        if tier not in tiers:
            raise pytest.UsageError(
                f"{item.nodeid}: a test belongs in a tier folder tests/<tier>/, one of "
                f"{sorted(tiers)} (pyproject.toml's markers)"
            )
        item.add_marker(tier)


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory) -> dict[str, Path]:
    """Hold each variant rendered once per test session."""
    return {}


@pytest.fixture(scope="session")
def rendered(render_cache, tmp_path_factory):
    """Return a function that renders a variant once per session and returns its folder."""

    def _rendered(variant: Variant) -> Path:
        if variant.id not in render_cache:
            destination = tmp_path_factory.mktemp("variant") / "service"
            render_cache[variant.id] = render(variant.answers, destination)
        return render_cache[variant.id]

    return _rendered
