"""Fixtures shared by every tier of the template's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rendering import render
from variants import Variant, load_variants

SUPPORTED = load_variants("supported")
UNSUPPORTED = load_variants("unsupported")


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


def supported_params():
    """Parametrize a test over every supported variant, with readable ids."""
    return pytest.mark.parametrize("variant", SUPPORTED, ids=[v.id for v in SUPPORTED])
