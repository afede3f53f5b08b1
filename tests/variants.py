"""Read the supported and unsupported variants from tests/variants.yml."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
VARIANTS_FILE = TEMPLATE_ROOT / "tests" / "variants.yml"


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


if __name__ == "__main__":
    # `python tests/variants.py` prints the supported ids as JSON for the CI matrix.
    json.dump([variant.id for variant in load_variants("supported")], sys.stdout)
