"""Read the supported and unsupported variants from tests/variants.yml, and copier.yml."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_ROOT = Path(__file__).resolve().parents[2]
VARIANTS_FILE = TEMPLATE_ROOT / "tests" / "variants.yml"
COPIER_YML: dict[str, Any] = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())


@dataclass(frozen=True)
class Variant:
    """One set of answers given to copier, with a readable id."""

    answers: dict[str, Any]
    message: str = ""
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", variant_id(self.answers))


def variant_id(answers: dict[str, Any]) -> str:
    """Name a variant after the answers it changes, e.g. broker:rabbitmq-database:sqlite."""
    if not answers:
        return "defaults"
    parts = []
    for key, value in answers.items():
        shown = "+".join(map(str, value)) if isinstance(value, list) else str(value).lower()
        parts.append(f"{key}:{shown}")
    return "-".join(parts)


def load_variants(kind: str) -> list[Variant]:
    """Return the 'supported' or 'unsupported' variants."""
    data = yaml.safe_load(VARIANTS_FILE.read_text())
    return [
        Variant(answers=item["answers"], message=item.get("message", "")) for item in data[kind]
    ]


SUPPORTED = load_variants("supported")
UNSUPPORTED = load_variants("unsupported")


@functools.cache
def copier_defaults() -> dict[str, Any]:
    """Return the default of every question copier.yml asks (a Jinja default as written)."""
    return {
        name: spec["default"]
        for name, spec in COPIER_YML.items()
        if isinstance(spec, dict) and not name.startswith("_") and "default" in spec
    }


def answer(variant: Variant, name: str) -> Any:
    """Return a variant's answer, or copier.yml's default (for literal defaults only)."""
    return variant.answers.get(name, copier_defaults()[name])


def variants_with(*names: str) -> list[Variant]:
    """Return the supported variants where any of the boolean answers `names` is true."""
    return [variant for variant in SUPPORTED if any(answer(variant, name) for name in names)]
