"""The reference frontier: a simulated frontier that answers the suite's references, wrong on a
stated share of them, deterministically, and says it is a simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gekro_ft.errors import ProviderError
from gekro_ft.eval.metrics import score
from gekro_ft.eval.providers import make_provider
from gekro_ft.eval.reference import parse_spec
from gekro_ft.eval.runner import load_examples
from gekro_ft.eval.suite import load_suite


@pytest.fixture(scope="module")
def suite():
    return load_suite("ticket-extraction")


def _answers(suite, spec, limit=None):
    provider = make_provider(spec, None, suite.endpoint, Path("unused"))
    examples = load_examples(suite.model_copy(update={"limit": limit}))
    return provider, examples, provider.generate([e.conv for e in examples], suite.generation)


def test_wrong_on_exactly_the_stated_share_with_one_field_each(suite):
    provider, examples, answers = _answers(suite, "reference:ticket-extraction@0.05")
    wrong = [(e, a) for e, a in zip(examples, answers) if a.text != e.reference]
    assert len(wrong) == round(0.05 * len(examples)) == provider.describe()["wrong_answers"] == 3
    for e, a in wrong:  # one plausible mistake: valid JSON, the same keys, one value changed
        ref, got = json.loads(e.reference), json.loads(a.text)
        assert got.keys() == ref.keys()
        assert sum(ref[k] != got[k] for k in ref) == 1
    rows, agg = score(suite.metrics, [a.text for a in answers], [e.reference for e in examples])
    assert agg["exact_match"] == pytest.approx(57 / 60) and agg["json_schema_valid"] == 1.0
    assert provider.describe()["simulation"] is True and "simulated" in provider.describe()["note"]


def test_the_same_mistakes_on_any_subset_and_every_run(suite):
    _, _, full = _answers(suite, "reference:ticket-extraction@0.2")
    _, _, again = _answers(suite, "reference:ticket-extraction@0.2")
    _, _, first10 = _answers(suite, "reference:ticket-extraction@0.2", limit=10)
    assert [a.text for a in full] == [a.text for a in again]
    assert [a.text for a in first10] == [a.text for a in full[:10]]


def test_rate_zero_is_the_references_and_tokens_are_estimated(suite):
    _, examples, answers = _answers(suite, "reference:ticket-extraction@0")
    assert [a.text for a in answers] == [e.reference for e in examples]
    assert all(a.output_tokens == -(-len(a.text) // 4) and a.input_tokens > a.output_tokens for a in answers)


def test_a_prompt_outside_the_suite_is_a_failed_answer_not_a_guess(suite):
    from gekro_ft.data.conversation import Conversation, Turn

    provider = make_provider("reference:ticket-extraction", None, suite.endpoint, Path("unused"))
    conv = Conversation(turns=[Turn(role="user", content="What is 2+2?"), Turn(role="assistant", content="4")])
    (answer,) = provider.generate([conv], suite.generation)
    assert answer.text is None and answer.error_kind == "not_in_suite"


@pytest.mark.parametrize("spec, problem", [
    ("reference:", "name the suite"),
    ("reference:ticket-extraction@lots", "must be a number"),
    ("reference:ticket-extraction@1.5", "between 0 and 1"),
    ("reference:ticket-extraction@nan", "between 0 and 1"),
])
def test_bad_specs_say_what_is_wrong(spec, problem):
    with pytest.raises(ProviderError, match=problem):
        parse_spec(spec)


def test_default_rate_and_a_suite_by_path():
    assert parse_spec("reference:ticket-extraction") == ("ticket-extraction", 0.05)
    assert parse_spec("reference:eval/x@y.yaml@0.1") == ("eval/x@y.yaml", 0.1)
