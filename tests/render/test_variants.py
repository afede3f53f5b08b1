"""The variant list covers every answer copier.yml offers, and CI reads the same list."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.variants import COPIER_YML, SUPPORTED, TEMPLATE_ROOT, UNSUPPORTED, variant_id

QUESTIONS = {
    name: spec
    for name, spec in COPIER_YML.items()
    if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
}
# The answer pairs most likely to break a render or a boot; each must stay in the list.
RISKY = [
    {"broker": "rabbitmq", "database": "sqlite"},
    {"use_beat": False},
    {"use_flower": False},
]


def choice_values(spec: dict) -> list:
    """Return every value a choice or bool question accepts."""
    if spec.get("type") == "bool":
        return [True, False]
    choices = spec["choices"]
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def effective(answers: dict) -> dict:
    """Return a variant's answers on top of copier.yml's literal defaults."""
    defaults = {
        name: spec["default"]
        for name, spec in QUESTIONS.items()
        if "default" in spec and not (isinstance(spec["default"], str) and "{{" in spec["default"])
    }
    return {**defaults, **answers}


def test_copier_yml_has_choice_and_bool_questions():
    """copier.yml offers the broker, database, Python and yes/no questions the tiers rely on."""
    enumerated = {n for n, s in QUESTIONS.items() if "choices" in s or s.get("type") == "bool"}
    assert {"broker", "database", "python_version", "use_flower", "use_beat"} <= enumerated
    assert {"use_compose", "use_kubernetes"} <= enumerated


@pytest.mark.parametrize(
    "question",
    sorted(n for n, s in QUESTIONS.items() if "choices" in s or s.get("type") == "bool"),
)
def test_every_value_of_every_choice_is_rendered_by_a_variant(question):
    """Each value of each choice or bool question is used by at least one supported variant."""
    used = {repr(effective(variant.answers).get(question)) for variant in SUPPORTED}
    missing = [value for value in choice_values(QUESTIONS[question]) if repr(value) not in used]
    assert not missing, f"no supported variant answers {question} with {missing}"


@pytest.mark.parametrize("pair", RISKY, ids=variant_id)
def test_risky_answer_pairs_are_in_the_list(pair):
    """The risky combinations stay in the supported list."""
    assert any(pair.items() <= effective(variant.answers).items() for variant in SUPPORTED)


def test_variant_ids_are_unique():
    """No two variants, supported or not, share an id."""
    ids = [variant.id for variant in SUPPORTED + UNSUPPORTED]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_variants_only_answer_questions_copier_asks():
    """Every answer in the list names a real question (a typo would silently test nothing)."""
    unknown = {
        (variant.id, name)
        for variant in SUPPORTED + UNSUPPORTED
        for name in variant.answers
        if name not in QUESTIONS
    }
    assert not unknown, f"answers to questions copier.yml does not ask: {sorted(unknown)}"


def test_every_unsupported_variant_states_its_message():
    """Each unsupported variant says which words copier's refusal must contain."""
    assert UNSUPPORTED
    assert all(variant.message.strip() for variant in UNSUPPORTED)


def test_supported_choice_answers_are_valid_choices():
    """A supported variant only picks values copier.yml offers."""
    wrong = [
        (variant.id, name, value)
        for variant in SUPPORTED
        for name, value in variant.answers.items()
        if name in QUESTIONS
        and ("choices" in QUESTIONS[name] or QUESTIONS[name].get("type") == "bool")
        and value not in choice_values(QUESTIONS[name])
    ]
    assert not wrong, wrong


def test_variants_script_prints_the_ids_ci_reads():
    """`python tests/variants.py` prints the supported ids as a JSON list for the CI matrix."""
    completed = subprocess.run(
        [sys.executable, "tests/variants.py"],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(completed.stdout) == [variant.id for variant in SUPPORTED]
