"""The generated package's rooms: no import circle, nothing imports upward, few levels; and the
render-time rules of copier.yml are the run-time rules of the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.params import supported_params
from support.rendering import render, rendered_answers, run_with_service_source
from support.variants import SUPPORTED

# The longest chain of imports from a module to the bottom of the package.
MAX_IMPORT_LEVELS = 8
# The composition root and the modules above it: role entry points and operator commands.
TOP_MODULES = {"app", "web", "worker", "beat", "flower", "doctor", "operations"}
# Only these may import the composition root or a role module.
ALLOWED_UPWARD = {
    "web": {"app"},
    "worker": {"app"},
    "beat": {"app"},
    "doctor": {"app"},
    "operations": {"app"},
}


def import_graph(project: Path, package: str) -> dict[str, set[str]]:
    """Return module → the package's modules it imports, function-level imports included."""
    root = project / "src"
    modules: dict[str, Path] = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    assert len(graph) > 20, f"{package}: too few modules found under {root}"
    return graph


def package_graph(project: Path) -> tuple[str, dict[str, set[str]]]:
    """Return the rendered project's package name and its import graph."""
    package = rendered_answers(project)["package_name"]
    return package, import_graph(project, package)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return every import circle found by a depth-first walk."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """Return each module's level: 1 + the highest level of what it imports (acyclic graph)."""
    memo: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((level(target) for target in graph[name]), default=0)
        return memo[name]

    return {name: level(name) for name in graph}


@supported_params()
def test_the_package_has_no_import_circle_and_few_levels(variant, rendered):
    _package, graph = package_graph(rendered(variant))
    assert cycles(graph) == []
    deepest = max(levels(graph).items(), key=lambda item: item[1])
    assert deepest[1] <= MAX_IMPORT_LEVELS, f"{deepest[0]} is {deepest[1]} levels deep"


@supported_params()
def test_no_module_imports_the_composition_root_or_a_role_module(variant, rendered):
    package, graph = package_graph(rendered(variant))
    top = {f"{package}.{name}" for name in TOP_MODULES}
    upward = {}
    for name, targets in graph.items():
        short = name.removeprefix(f"{package}.")
        allowed = {f"{package}.{target}" for target in ALLOWED_UPWARD.get(short, ())}
        if bad := sorted((targets & top) - allowed):
            upward[name] = bad
    assert upward == {}


def test_the_import_checks_find_a_circle():
    """The checks above can fail: a two-module circle is found."""
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert levels({"a": {"b"}, "b": set()}) == {"a": 2, "b": 1}


RABBITMQ = next(v for v in SUPPORTED if v.answers.get("broker") == "rabbitmq")


def test_copier_and_the_service_agree_on_the_rabbitmq_time_limit_cap(rendered, tmp_path):
    """copier.yml refuses what the service's start-up checks refuse, and accepts the rest."""
    project = rendered(RABBITMQ)
    completed = run_with_service_source(
        project,
        [
            "-c",
            f"from {rendered_answers(project)['package_name']}.celery.profile import "
            "RABBITMQ_MAX_TIME_LIMIT as cap; print(cap)",
        ],
    )
    assert completed.returncode == 0, completed.stderr
    cap = int(completed.stdout)
    answers = {**RABBITMQ.answers, "broker": "rabbitmq"}
    render({**answers, "task_time_limit": cap}, tmp_path / "at-cap")
    with pytest.raises(ValueError, match=f"at most {cap} seconds"):
        render({**answers, "task_time_limit": cap + 1}, tmp_path / "over-cap")
