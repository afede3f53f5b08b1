"""Parametrize a test over supported variants, with the variants' readable ids."""

from __future__ import annotations

import pytest

from .variants import SUPPORTED, variants_with


def supported_params():
    """Parametrize a test over every supported variant, with readable ids."""
    return pytest.mark.parametrize("variant", SUPPORTED, ids=[v.id for v in SUPPORTED])


def params_with(*names: str):
    """Parametrize a test over the supported variants that have a feature, with readable ids."""
    chosen = variants_with(*names)
    return pytest.mark.parametrize("variant", chosen, ids=[variant.id for variant in chosen])
