"""The fault tier's figures per variant: a table on stdout (pytest -s) and a JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = (
    ("test", "test"),
    ("jobs", "jobs"),
    ("completed", "completed"),
    ("lost", "lost"),
    ("started_twice", "started twice"),
    ("side_effects_twice", "side effects twice"),
    ("recovery_seconds", "recovery s"),
    ("note", "measured"),
)


@dataclass
class Results:
    """What each fault test measured on one variant."""

    variant: str
    broker: str
    profile: dict[str, Any]
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, test: str, **figures: Any) -> None:
        self.tests.setdefault(test, {}).update(figures)

    def table(self) -> str:
        lines = [
            f"fault tier, {self.variant} ({self.broker}); profile: {self.profile}",
            "| " + " | ".join(title for _, title in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for test, figures in self.tests.items():
            cells = []
            for key, _ in COLUMNS:
                value = test if key == "test" else figures.get(key, "")
                cells.append(str(value))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def write(self, path: Path) -> Path:
        data = {
            "variant": self.variant,
            "broker": self.broker,
            "profile": self.profile,
            "tests": self.tests,
        }
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return path
