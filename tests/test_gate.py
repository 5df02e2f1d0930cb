"""The gate: a safe little expression language over candidate/baseline aggregates."""

from __future__ import annotations

import pytest

from gekro_ft.errors import GekroError
from gekro_ft.eval.gate import Comparison, GateError, parse_gate

CAND = {"field_f1": 0.80, "json_valid": 0.99, "exact_match": 0.5}
BASE = {"field_f1": 0.81, "json_valid": 1.0, "exact_match": 0.7}
TYPICAL = "candidate.field_f1 >= baseline.field_f1 - 0.02 and candidate.json_valid >= 0.98"


def test_typical_gate_passes_with_its_breakdown():
    v = parse_gate(TYPICAL).evaluate(CAND, BASE)
    # 0.80 >= 0.81 - 0.02 = 0.79 holds; 0.99 >= 0.98 holds
    assert v.passed is True
    assert v.comparisons == [
        Comparison("candidate.field_f1 >= baseline.field_f1 - 0.02", 0.80, pytest.approx(0.79), True),
        Comparison("candidate.json_valid >= 0.98", 0.99, 0.98, True)]
    assert v.to_dict()["comparisons"][1] == {"text": "candidate.json_valid >= 0.98", "left": 0.99,
                                             "right": 0.98, "held": True, "bounded": False}


def test_typical_gate_fails_and_still_reports_every_comparison():
    v = parse_gate(TYPICAL).evaluate({**CAND, "field_f1": 0.78}, BASE)
    # 0.78 >= 0.79 fails; the second comparison is still evaluated for the report
    assert v.passed is False
    assert [c.held for c in v.comparisons] == [False, True]


def test_names_per_side():
    g = parse_gate(TYPICAL)
    assert g.names() == {"candidate": {"field_f1", "json_valid"}, "baseline": {"field_f1"}, "delta": set()}
    assert g.needs_baseline
    assert not parse_gate("candidate.exact_match > 0.4").needs_baseline


def test_chained_comparison():
    g = parse_gate("0.4 <= candidate.exact_match < baseline.exact_match")
    v = g.evaluate(CAND, BASE)
    # 0.4 <= 0.5 and 0.5 < 0.7
    assert v.passed
    assert [(c.text, c.left, c.right, c.held) for c in v.comparisons] == [
        ("0.4 <= candidate.exact_match", 0.4, 0.5, True),
        ("candidate.exact_match < baseline.exact_match", 0.5, 0.7, True)]
    assert not g.evaluate({"exact_match": 0.7}, BASE).passed   # 0.7 < 0.7 fails


@pytest.mark.parametrize("expr, passed", [
    # and binds tighter than or: False or (True and True) -> True
    ("candidate.exact_match > 0.9 or candidate.json_valid > 0.9 and candidate.field_f1 > 0.5", True),
    # parentheses change it: (False or True) and False -> False
    ("(candidate.exact_match > 0.9 or candidate.json_valid > 0.9) and candidate.field_f1 > 0.9", False),
    # not binds tighter than and: (not False) and False -> False
    ("not candidate.exact_match > 0.9 and candidate.field_f1 > 0.9", False),
    # not over the whole: not (False and False) -> True
    ("not (candidate.exact_match > 0.9 and candidate.field_f1 > 0.9)", True),
    # arithmetic: * before -, unary minus: 0.5 - 2 * 0.2 = 0.1 > -(-0.05) = 0.05
    ("candidate.exact_match - 2 * 0.2 > -(-0.05)", True),
    # division: 0.5 / 0.7 = 0.714 >= 0.7
    ("candidate.exact_match / baseline.exact_match >= 0.7", True),
    ("candidate.exact_match == 0.5 and candidate.exact_match != 0.4", True),
])
def test_precedence_and_operators(expr, passed):
    assert parse_gate(expr).evaluate(CAND, BASE).passed is passed


def test_multiline_yaml_text_is_one_expression():
    g = parse_gate("candidate.field_f1 >= 0.7\n  and candidate.json_valid >= 0.98\n")
    assert g.text == "candidate.field_f1 >= 0.7 and candidate.json_valid >= 0.98"
    assert g.evaluate(CAND, None).passed


@pytest.mark.parametrize("expr, part, why", [
    ("__import__('os')", "__import__('os')", "function calls are not allowed"),
    ("candidate.__class__ > 0", "candidate.__class__", "metric names do not start with '_'"),
    ("(1 if candidate.x else 2) > 1", "1 if candidate.x else 2", "conditional expressions are not allowed"),
    ("candidate.x == 'high'", "'high'", "strings are not allowed"),
    ("candidate.x ** 2 > 0.5", "candidate.x ** 2", "only the arithmetic operators + - * / are allowed"),
    ("candidate.x % 2 > 0", "candidate.x % 2", "only the arithmetic operators"),
    ("max(candidate.x, 1) > 0", "max(candidate.x, 1)", "function calls are not allowed"),
    ("candidate['x'] > 0", "candidate['x']", "subscripts are not allowed"),
    ("(lambda: 1)() > 0", "(lambda: 1)()", "function calls are not allowed"),
    ("(lambda: 1) > 0", "lambda: 1", "lambdas are not allowed"),
    ("x > 0.5", "x", "the only names are candidate.NAME, baseline.NAME and delta.NAME"),
    ("candidate > 0.5", "candidate", "name a metric: candidate.NAME"),
    ("candidate.x.real > 0", "candidate.x.real", "after a metric only .lo and .hi (its interval's bounds) may "
                                                 "follow, not .real"),
    ("candidate.x.lo.hi > 0", "candidate.x.lo", "only candidate.NAME, baseline.NAME and delta.NAME"),
    ("other.x.lo > 0", "other.x", "only candidate.NAME, baseline.NAME and delta.NAME"),
    ("delta > 0", "delta", "name a metric: delta.NAME"),
    ("candidate.x in (1, 2)", "candidate.x in (1, 2)", "only the comparisons"),
    ("candidate.x is 1", "candidate.x is 1", "only the comparisons"),
    ("candidate.x > True", "True", "True is not a number"),
    ("candidate.x > None", "None", "None is not a number"),
    ("~candidate.x > 0", "~candidate.x", "only the unary operators - and not"),
    ("(y := 1) > 0", "y := 1", "assignments are not allowed"),
    ("candidate.x", "candidate.x", "a gate must be a condition"),
    ("candidate.x + 1", "candidate.x + 1", "a gate must be a condition"),
    ("not candidate.x", "candidate.x", "a condition is needed here"),
    ("candidate.x > 0 and 1", "1", "a condition is needed here"),
    ("(candidate.x > 0) + 1 > 1", "candidate.x > 0", "a number is needed here"),
    ("candidate.x > 1e999", "1e999", "numbers must be finite"),
])
def test_rejected_constructs_name_the_part(expr, part, why):
    with pytest.raises(GateError) as e:
        parse_gate(expr)
    assert f"`{part}` is not allowed: {why}" in str(e.value)
    assert isinstance(e.value, GekroError)


@pytest.mark.parametrize("expr, message", [
    ("", "gate: empty"),
    ("   \n", "gate: empty"),
    ("candidate.x >", "invalid syntax"),
    ("candidate.x > 0.5 # or baseline", "'#' is not allowed"),
    ("candidate.x > 0 " + "and candidate.x > 0 " * 200, "longer than 2000 characters"),
])
def test_syntax_problems(expr, message):
    with pytest.raises(GateError, match=message):
        parse_gate(expr)


def test_unknown_metric_names_are_all_listed():
    g = parse_gate("candidate.f1 >= baseline.f1 and candidate.json_valid > 0.9 and baseline.bleu > 0")
    with pytest.raises(GateError) as e:
        g.evaluate(CAND, BASE)
    msg = str(e.value)
    assert "unknown candidate metric(s) candidate.f1 (available: exact_match, field_f1, json_valid)" in msg
    assert "unknown baseline metric(s) baseline.bleu, baseline.f1" in msg


def test_missing_baseline_is_an_error_not_a_pass():
    g = parse_gate("candidate.field_f1 >= baseline.field_f1 - 0.5")   # would pass on any baseline value <= 1.3
    with pytest.raises(GateError, match="refers to baseline.field_f1 but there is no baseline"):
        g.evaluate(CAND, None)


def test_check_up_front():
    g = parse_gate(TYPICAL)
    g.check(["field_f1", "json_valid"], ["field_f1"])
    with pytest.raises(GateError, match="candidate.json_valid"):
        g.check(["field_f1"], ["field_f1", "json_valid"])


@pytest.mark.parametrize("cand", [
    {"field_f1": float("nan"), "json_valid": 1.0},
    {"field_f1": 0.9, "json_valid": float("inf")},
])
def test_nan_or_infinite_metric_is_undecided(cand):
    # NaN >= x is False in Python: `not (nan < 0.5)` would pass, so NaN must raise instead
    g = parse_gate("not candidate.field_f1 < 0.5 and candidate.json_valid > 0")
    with pytest.raises(GateError, match="cannot decide"):
        g.evaluate(cand, None)


def test_division_by_zero_is_undecided():
    g = parse_gate("candidate.exact_match / baseline.exact_match >= 0.9")
    with pytest.raises(GateError, match=r"division by zero in `candidate.exact_match / baseline.exact_match`"):
        g.evaluate(CAND, {"exact_match": 0.0})


def test_overflow_is_undecided():
    g = parse_gate("candidate.exact_match * 1e308 * 10 > 0")
    with pytest.raises(GateError, match="is inf"):
        g.evaluate(CAND, None)


def test_a_metric_that_is_not_a_number_is_undecided():
    g = parse_gate("candidate.exact_match > 0")
    with pytest.raises(GateError, match="not a number"):
        g.evaluate({"exact_match": "0.9"}, None)
    with pytest.raises(GateError, match="not a number"):
        g.evaluate({"exact_match": True}, None)


# --- bounds and the paired difference -------------------------------------------------------------

INTERVALS = {"candidate": {"field_f1": {"lo": 0.70, "hi": 0.88}},
             "baseline": {"field_f1": {"lo": 0.72, "hi": 0.90}},
             "delta": {"field_f1": {"lo": -0.05, "hi": 0.03}}}


def test_delta_is_candidate_minus_baseline_and_needs_a_baseline():
    g = parse_gate("delta.field_f1 >= -0.02")
    assert g.needs_baseline and g.names()["delta"] == {"field_f1"}
    v = g.evaluate(CAND, BASE)
    assert v.comparisons[0].left == pytest.approx(0.80 - 0.81) and v.passed
    with pytest.raises(GateError, match="delta.field_f1 but there is no baseline"):
        g.evaluate(CAND, None)


def test_bounds_read_the_intervals_and_mark_the_comparison():
    g = parse_gate("delta.field_f1.lo >= -0.02 and candidate.field_f1.hi > baseline.field_f1.lo")
    v = g.evaluate(CAND, BASE, INTERVALS)
    assert [c.left for c in v.comparisons] == [-0.05, 0.88] and v.comparisons[1].right == 0.72
    assert [c.held for c in v.comparisons] == [False, True] and not v.passed
    assert all(c.bounded for c in v.comparisons)
    assert not parse_gate(TYPICAL).evaluate(CAND, BASE).comparisons[0].bounded


def test_a_bound_without_an_interval_fails_closed():
    g = parse_gate("delta.field_f1.lo >= 0")
    with pytest.raises(GateError, match="delta.field_f1.lo: no interval was computed"):
        g.evaluate(CAND, BASE)
    with pytest.raises(GateError, match="nan; cannot decide"):
        g.evaluate(CAND, BASE, {"delta": {"field_f1": {"lo": float("nan"), "hi": 0.0}}})


def test_bounds_as_points_for_a_bootstrap_draw():
    v = parse_gate("candidate.field_f1.lo >= 0.75").evaluate(CAND, BASE, bounds_as_points=True)
    assert v.comparisons[0].left == 0.80 and v.passed


def test_unknown_delta_metric_is_named_with_what_is_available():
    with pytest.raises(GateError, match=r"unknown delta metric\(s\) delta.nope"):
        parse_gate("delta.nope.lo > 0").check(["field_f1"], ["field_f1"])
