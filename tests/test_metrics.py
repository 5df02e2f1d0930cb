"""Eval metrics: every value below is worked out by hand in the comment beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gekro_ft.errors import GekroError
from gekro_ft.eval.metrics import (MetricError, aggregate_names, build_metrics, check_references,
                                   example_score_names, parse_json, score, success_rate)

TICKET_SCHEMA = {
    "type": "object",
    "properties": {"priority": {"enum": ["low", "high"]}, "title": {"type": "string"}},
    "required": ["priority", "title"],
}


def run(specs, preds, refs, base_dir: Path = Path(".")):
    return score(build_metrics(specs, base_dir), preds, refs)


# ---------------------------------------------------------------- exact_match, json_valid

def test_exact_match_normalizes_text():
    rows, agg = run(["exact_match"], [" Hello \n  World ", "hello", "Hello world!"],
                    ["hello world", "hello world", "hello world"])
    # strip + collapse + casefold: only the first equals "hello world"
    assert [r["exact_match"] for r in rows] == [1.0, 0.0, 0.0]
    assert agg == {"exact_match": pytest.approx(1 / 3)}


def test_exact_match_compares_json_as_values():
    preds = ['{"b": 2, "a": [1, "X "]}',             # other key order, string differs only in case/space
             '```json\n{"a": [1, "x"], "b": 2.0}\n```',  # fenced; 2.0 == 2
             '{"a": [1, "x"], "b": true}',           # true is not 2
             '{"a": ["x", 1], "b": 2}']              # list order matters
    rows, _ = run(["exact_match"], preds, ['{"a": [1, "x"], "b": 2}'] * 4)
    assert [r["exact_match"] for r in rows] == [1.0, 1.0, 0.0, 0.0]


def test_exact_match_json_true_is_not_one():
    rows, _ = run(["exact_match"], ['{"a": true}'], ['{"a": 1}'])
    assert rows[0]["exact_match"] == 0.0


def test_json_valid_accepts_objects_arrays_and_a_whole_fence():
    preds = ['{"a": 1}', "[1, 2]", '```json\n{"a": 1}\n```', "```\n[1]\n```",
             'Here you go: ```json\n{"a": 1}\n```',  # prose around the fence: not JSON output
             "42", '"text"', '{"a": NaN}', '{"a": 1', ""]
    rows, agg = run(["json_valid"], preds, ["x"] * len(preds))
    assert [r["json_valid"] for r in rows] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert agg["json_valid"] == pytest.approx(4 / 10)


def test_parse_json_unwraps_the_fence():
    assert parse_json('  ```JSON\n{"a": [1]}\n```  ') == {"a": [1]}
    assert parse_json("null") is None


# ---------------------------------------------------------------- json_schema

def test_json_schema_from_file(tmp_path):
    (tmp_path / "ticket.schema.json").write_text(json.dumps(TICKET_SCHEMA))
    preds = ['{"priority": "low", "title": "VPN down"}',
             '{"priority": "medium", "title": "VPN down"}',   # not in enum
             '{"priority": "low"}',                           # title missing
             "not json"]
    rows, agg = run([{"name": "json_schema", "schema": "ticket.schema.json"}], preds, ["x"] * 4, tmp_path)
    assert [r["json_schema_valid"] for r in rows] == [1.0, 0.0, 0.0, 0.0]
    assert agg == {"json_schema_valid": 0.25}
    assert rows[0]["json_schema_error"] is None
    assert rows[1]["json_schema_error"].startswith("priority:")
    assert "title" in rows[2]["json_schema_error"]


def test_json_schema_inline():
    rows, _ = run([{"name": "json_schema", "schema": {"type": "array", "items": {"type": "integer"}}}],
                  ["[1, 2]", '[1, "2"]'], ["x", "x"])
    assert [r["json_schema_valid"] for r in rows] == [1.0, 0.0]


def test_json_schema_missing_file_names_the_path(tmp_path):
    with pytest.raises(MetricError, match=r"metrics\[0\] \(json_schema\): schema .*nope\.schema\.json: cannot read"):
        build_metrics([{"name": "json_schema", "schema": "nope.schema.json"}], tmp_path)


def test_json_schema_bad_json_names_path_and_line(tmp_path):
    (tmp_path / "s.json").write_text('{\n  "type": "object",\n  oops\n}')
    with pytest.raises(MetricError, match=r"s\.json:3: not valid JSON"):
        build_metrics([{"name": "json_schema", "schema": "s.json"}], tmp_path)


def test_json_schema_that_is_not_a_schema():
    with pytest.raises(MetricError, match="not a valid JSON Schema"):
        build_metrics([{"name": "json_schema", "schema": {"type": "no-such-type"}}], Path("."))


# ---------------------------------------------------------------- field_f1

def test_field_f1_flattens_and_normalizes():
    # pred fields: a, b.c (2); ref fields: a, b.c, d (3); "X" vs "x " equal normalized -> tp = 2
    # precision 2/2 = 1, recall 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = (4/3) / (5/3) = 0.8
    rows, _ = run(["field_f1"], ['{"a":1,"b":{"c":"X"}}'], ['{"a":1,"b":{"c":"x "},"d":2}'])
    assert rows[0] == {"field_precision": 1.0, "field_recall": pytest.approx(2 / 3), "field_f1": pytest.approx(0.8)}


def test_field_f1_lists_are_whole_values_and_extra_fields_cost_precision():
    # pred: tags ["a","b"] (ref has ["a"]: the whole list differs), n 1, extra 0 -> 3 fields, tp = 1 (n)
    # ref: tags, n -> 2 fields. precision 1/3, recall 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    rows, _ = run(["field_f1"], ['{"tags": ["a", "b"], "n": 1.0, "extra": 0}'], ['{"tags": ["a"], "n": 1}'])
    assert rows[0]["field_precision"] == pytest.approx(1 / 3)
    assert rows[0]["field_recall"] == pytest.approx(1 / 2)
    assert rows[0]["field_f1"] == pytest.approx(0.4)


def test_field_f1_edge_cases_and_mean_aggregate():
    preds = ["not json", "[1]", "{}", "{}", '{"a": 1}']
    refs = ['{"a": 1}', '{"a": 1}', "{}", '{"a": 1}', '{"a": 1}']
    rows, agg = run(["field_f1"], preds, refs)
    # unparseable and non-object -> 0; both empty -> 1; nothing predicted -> 0; exact -> 1
    assert [r["field_f1"] for r in rows] == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert [r["field_precision"] for r in rows] == [0.0, 0.0, 1.0, 0.0, 1.0]
    # mean over examples: (0 + 0 + 1 + 0 + 1) / 5
    assert agg["field_f1"] == pytest.approx(0.4)


def test_field_f1_needs_object_references():
    metrics = build_metrics(["field_f1"], Path("."))
    assert check_references(metrics, ['{"a": 1}', "plain text", "[1]"]) == [
        (1, "field_f1 needs a JSON object as reference"), (2, "field_f1 needs a JSON object as reference")]
    with pytest.raises(MetricError, match="example 2: field_f1 needs a JSON object"):
        score(metrics, ["{}", "{}", "{}"], ['{"a": 1}', "plain text", "[1]"])


# ---------------------------------------------------------------- classification

REFS6 = ["low", "low", "medium", "medium", "high", "high"]
PREDS6 = ["low", "medium", "Medium ", "medium", "low", "urgent"]


def test_classification_accuracy_and_macro_f1():
    rows, agg = run([{"name": "classification", "labels": ["low", "medium", "high"]}], PREDS6, REFS6)
    # correct: examples 0, 2, 3 -> accuracy 3/6 = 0.5
    # low:    tp 1 (ex0), fp 1 (ex4), fn 1 (ex1)  -> F1 = 2/(2+1+1) = 0.5
    # medium: tp 2 (ex2,3), fp 1 (ex1), fn 0      -> F1 = 4/5 = 0.8
    # high:   tp 0, fp 0, fn 2 (ex4, ex5)         -> F1 = 0
    # "urgent" is outside the set: wrong for ex5, no label's precision pays for it
    # macro = (0.5 + 0.8 + 0) / 3 = 0.4333...
    assert [r["label_correct"] for r in rows] == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert agg == {"accuracy": 0.5, "macro_f1": pytest.approx(1.3 / 3)}
    assert rows[2]["predicted_label"] == "medium" and rows[5]["predicted_label"] == "urgent"
    assert rows[5]["reference_label"] == "high"


def test_classification_in_set_wrong_label_costs_precision_and_unused_labels_are_left_out():
    labels = ["low", "medium", "high", "urgent", "critical"]
    _, agg = run([{"name": "classification", "labels": labels}], PREDS6, REFS6)
    # as above, plus urgent: tp 0, fp 1 (ex5), fn 0 -> F1 0;
    # critical: never a reference, never predicted -> left out of the average
    # macro = (0.5 + 0.8 + 0 + 0) / 4 = 0.325
    assert agg == {"accuracy": 0.5, "macro_f1": pytest.approx(0.325)}


def test_classification_from_a_dotted_json_field():
    spec = {"name": "classification", "field": "meta.priority", "labels": ["Low", "High"]}
    preds = ['{"meta": {"priority": "HIGH"}}', '{"meta": {"priority": "low"}}', "not json", '{"meta": {}}']
    refs = ['{"meta": {"priority": "high"}}'] * 2 + ['{"meta": {"priority": "low"}}'] * 2
    rows, agg = run([spec], preds, refs)
    assert [r["predicted_label"] for r in rows] == ["High", "Low", None, None]
    assert [r["label_correct"] for r in rows] == [1.0, 0.0, 0.0, 0.0]
    # High: tp 1 (ex0), fp 0, fn 1 (ex1) -> 2/(2+0+1) = 2/3; Low: tp 0, fp 1 (ex1), fn 2 (ex2, ex3) -> 0
    # macro = (2/3 + 0) / 2 = 1/3; accuracy 1/4
    assert agg == {"accuracy": 0.25, "macro_f1": pytest.approx(1 / 3)}


def test_classification_reference_outside_the_label_set_fails_early():
    metrics = build_metrics([{"name": "classification", "labels": ["low", "high"]}], Path("."))
    assert check_references(metrics, ["low", "Medium"]) == [
        (1, "classification: reference label 'medium' is not one of ['low', 'high']")]


# ---------------------------------------------------------------- rouge_l, chrf

def test_rouge_l_by_hand():
    preds = ["a cat sat", "The cat lay on a mat.", "", "日本 語"]
    refs = ["the cat sat on the mat"] * 2 + ["  ", "日本 語"]
    rows, agg = run(["rouge_l"], preds, refs)
    # 1: LCS("a cat sat", "the cat sat on the mat") = "cat sat" = 2; P = 2/3, R = 2/6; F = 2PR/(P+R) = 4/9
    # 2: LCS = "the cat on mat" = 4 of 6 each; P = R = 2/3; F = 2/3
    # 3: no words on either side -> 1.0 by definition; 4: identical non-ASCII words -> 1.0
    assert [r["rouge_l"] for r in rows] == pytest.approx([4 / 9, 2 / 3, 1.0, 1.0])
    assert agg["rouge_l"] == pytest.approx((4 / 9 + 2 / 3 + 2) / 4)


def test_chrf_properties_and_a_hand_value():
    preds = ["the same text", "abc", "ab", "a b", "", "x"]
    refs = ["the same text", "xyz", "abc", "abc", " ", ""]
    rows, agg = run(["chrf"], preds, refs)
    # "ab" vs "abc", character n-grams (whitespace ignored, so "a b" scores the same):
    #   n=1: hyp {a,b}, ref {a,b,c}, 2 match -> P 1, R 2/3;  n=2: hyp {ab}, ref {ab,bc} -> P 1, R 1/2
    #   n>=3: the hypothesis has none, so those orders do not count
    #   avg P = 1, avg R = (2/3 + 1/2) / 2 = 7/12; F_beta=2 = 5PR / (4P + R) = (35/12) / (55/12) = 7/11
    assert [r["chrf"] for r in rows] == pytest.approx([1.0, 0.0, 7 / 11, 7 / 11, 1.0, 0.0])
    assert agg["chrf"] == pytest.approx((1 + 0 + 14 / 11 + 1 + 0) / 6)


# ---------------------------------------------------------------- specs

def test_unknown_key_is_named():
    with pytest.raises(MetricError, match=r"metrics\[1\] \(classification\): unknown key 'lables'"):
        build_metrics(["exact_match", {"name": "classification", "labels": ["a", "b"], "lables": ["c"]}], Path("."))


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(MetricError) as e:
        build_metrics(["exact_match", "bleu"], Path("."))
    assert "metrics[1]: unknown metric 'bleu' (known: exact_match, json_valid, json_schema, field_f1, " \
           "classification, rouge_l, chrf)" in str(e.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(MetricError) as e:
        build_metrics([{"name": "json_schema"}, {"name": "classification", "labels": ["a", " A"]},
                       "exact_match", "exact_match", 3, {"schema": "x"}], Path("."))
    assert e.value.problems == [
        "metrics[0] (json_schema): schema: required",
        "metrics[1] (classification): labels: labels must differ after normalization (whitespace, case)",
        "metrics[3] (exact_match): listed twice (also metrics[2])",
        "metrics[4]: a metric name or a mapping with name:, got 3",
        "metrics[5]: name: required (known: exact_match, json_valid, json_schema, field_f1, "
        "classification, rouge_l, chrf)",
    ]
    assert isinstance(e.value, GekroError)


def test_empty_metrics_list():
    with pytest.raises(MetricError, match="non-empty list"):
        build_metrics([], Path("."))


# ---------------------------------------------------------------- score, names, success

def test_score_merges_rows_and_names_are_stable():
    specs = ["exact_match", "json_valid", {"name": "json_schema", "schema": TICKET_SCHEMA}, "field_f1",
             {"name": "classification", "field": "priority", "labels": ["low", "high"]}, "rouge_l", "chrf"]
    metrics = build_metrics(specs, Path("."))
    assert aggregate_names(metrics) == ["exact_match", "json_valid", "json_schema_valid", "field_precision",
                                        "field_recall", "field_f1", "accuracy", "macro_f1", "rouge_l", "chrf"]
    assert example_score_names(metrics) == ["exact_match", "json_valid", "json_schema_valid", "field_precision",
                                            "field_recall", "field_f1", "label_correct", "rouge_l", "chrf"]
    ref = '{"priority": "high", "title": "VPN down"}'
    rows, agg = score(metrics, [ref, '{"priority": "low", "title": "VPN down"}'], [ref, ref])
    assert list(agg) == aggregate_names(metrics)
    assert all(0.0 <= v <= 1.0 for v in agg.values())
    # second answer: one field of two wrong -> P = R = F1 = 1/2; mean over both = 3/4
    assert agg["field_f1"] == 0.75 and agg["exact_match"] == 0.5 and agg["json_schema_valid"] == 1.0
    assert rows[1]["predicted_label"] == "low" and rows[1]["label_correct"] == 0.0


def test_score_checks_its_inputs():
    metrics = build_metrics(["exact_match"], Path("."))
    with pytest.raises(ValueError):
        score(metrics, ["a"], ["a", "b"])
    with pytest.raises(GekroError, match="no examples"):
        score(metrics, [], [])


def test_success_rate():
    rows = [{"field_f1": 1.0}, {"field_f1": 0.8}, {"field_f1": 0.79}, {"field_f1": float("nan")}]
    assert success_rate(rows, "field_f1", 0.8) == 0.5   # 1.0 and 0.8 reach 0.8; NaN never succeeds
    assert success_rate(rows, "field_f1", 0.0) == 0.75
    with pytest.raises(GekroError, match="'exact_match' is not a per-example score \\(scores: field_f1\\)"):
        success_rate(rows, "exact_match", 1.0)


def test_importing_metrics_stays_light():
    # rouge-score pulls in nltk (seconds): only building the metric may import it
    code = "import sys, gekro_ft.eval.metrics, gekro_ft.eval.gate; " \
           "print(sorted(m for m in ('nltk', 'rouge_score', 'sacrebleu', 'jsonschema', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
