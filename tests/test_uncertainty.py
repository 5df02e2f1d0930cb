"""Eval with error bars: paired-bootstrap intervals recomputed from the report's own rows, gates on
bounds, and the note when a gate's comparison is not resolved by the sample."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO
from gekro_ft.errors import SuiteError
from gekro_ft.eval.gate import parse_gate
from gekro_ft.eval.metrics import build_metrics
from gekro_ft.eval.uncertainty import aggregate, paired_intervals, resolution_notes
from gekro_ft.intervals import bootstrap


def _rows(correct):
    return [{"exact_match": float(c)} for c in correct]


def test_the_delta_interval_is_the_paired_bootstrap_of_the_difference(tmp_path):
    metrics = build_metrics(["exact_match"], tmp_path)
    cand = _rows([1] * 20 + [0] * 10)
    base = _rows([1] * 18 + [0] * 12)
    gate = parse_gate("candidate.exact_match >= baseline.exact_match")
    out = paired_intervals(metrics, ("exact_match", 1.0), gate, cand, base, resamples=300, seed=3, confidence=0.9)
    # recomputed by hand with the shared core: the same draws (same seed) give the same bounds
    by_hand = bootstrap(30, lambda idx: {"d": sum(cand[i]["exact_match"] - base[i]["exact_match"] for i in idx)
                                         / len(idx)}, resamples=300, seed=3, confidence=0.9)["d"]
    d = out["delta"]["exact_match"]
    assert (d["point"], d["lo"], d["hi"]) == pytest.approx((by_hand.point, by_hand.lo, by_hand.hi))
    assert d["point"] == pytest.approx(2 / 30) and d["lo"] >= 0  # never worse on any example
    assert out["candidate"]["exact_match"]["hi"] - out["candidate"]["exact_match"]["lo"] > d["hi"] - d["lo"]
    assert out["comparisons"][0]["point"] == pytest.approx(2 / 30)


def test_failed_examples_on_either_side_are_left_out_of_the_pairs(tmp_path):
    metrics = build_metrics(["exact_match"], tmp_path)
    cand = [*_rows([1, 1, 0]), None]
    base = [None, *_rows([1, 0, 1])]
    out = paired_intervals(metrics, ("exact_match", 1.0), parse_gate("delta.exact_match >= 0"), cand, base,
                           resamples=100, seed=0, confidence=0.95)
    assert out["examples"] == [1, 2] and out["n"] == 2
    assert out["candidate"]["exact_match"]["point"] == 0.5 and out["baseline"]["exact_match"]["point"] == 0.5
    assert paired_intervals(metrics, ("exact_match", 1.0), parse_gate("delta.exact_match >= 0"), [None], [None],
                            resamples=100, seed=0, confidence=0.95) is None


def test_macro_f1_is_resampled_as_a_corpus_level_aggregate(tmp_path):
    metrics = build_metrics([{"name": "classification", "labels": ["a", "b"]}], tmp_path)
    preds, refs = ["a", "a", "b", "b", "a", "b"], ["a", "b", "b", "b", "a", "a"]
    rows = [m for p, r in zip(preds, refs) for m in [metrics[0].score_one(p, r)]]
    out = paired_intervals(metrics, ("label_correct", 1.0), parse_gate("candidate.macro_f1 > 0"), rows, None,
                           resamples=200, seed=0, confidence=0.95)
    assert out["candidate"]["macro_f1"]["point"] == pytest.approx(aggregate(metrics, ("label_correct", 1.0),
                                                                            rows)["macro_f1"])
    assert out["baseline"] is None and out["delta"] is None


def test_an_unresolved_comparison_gets_a_note_with_the_examples_it_would_take(tmp_path):
    metrics = build_metrics(["exact_match"], tmp_path)
    cand, base = _rows([1, 0] * 15), _rows([0, 1] * 15)  # equal rates, disagreeing on every example
    gate = parse_gate("candidate.exact_match >= baseline.exact_match - 0.02 and candidate.exact_match >= 0")
    ivs = paired_intervals(metrics, ("exact_match", 1.0), gate, cand, base, resamples=300, seed=0, confidence=0.95)
    verdict = gate.evaluate(aggregate(metrics, ("exact_match", 1.0), cand),
                            aggregate(metrics, ("exact_match", 1.0), base))
    notes = resolution_notes([c.__dict__ for c in verdict.comparisons], ivs)
    assert len(notes) == 1  # the second comparison holds on every draw
    half = (ivs["comparisons"][0]["hi"] - ivs["comparisons"][0]["lo"]) / 2
    assert "is not resolved by 30 examples" in notes[0] and f"±{half:.3g}" in notes[0]
    assert f"about {-(-int(30 * (half / 0.02) ** 2 * 1e6) // 10**6):,}" in notes[0] or "examples would resolve" in notes[0]
    # a gate on bounds carries its uncertainty itself: no note
    bounded = parse_gate("delta.exact_match.lo >= -0.02")
    ivs_b = paired_intervals(metrics, ("exact_match", 1.0), bounded, cand, base, resamples=300, seed=0,
                             confidence=0.95)
    v = bounded.evaluate(aggregate(metrics, ("exact_match", 1.0), cand), aggregate(metrics, ("exact_match", 1.0), base),
                         {"delta": ivs_b["delta"]})
    assert not v.passed and resolution_notes([c.__dict__ for c in v.comparisons], ivs_b) == []


def test_a_suite_states_its_resampling_and_unknown_keys_are_errors(tmp_path):
    from gekro_ft.eval.suite import load_suite

    doc = yaml.safe_load((REPO / "eval" / "ticket-extraction.yaml").read_text())
    doc.update(data=str(REPO / "eval" / "ticket-extraction" / "openai.jsonl"),
               intervals={"resamples": 500, "seed": 7, "confidence": 0.9})
    doc["metrics"][2]["schema"] = str(REPO / "eval" / "ticket-extraction" / "ticket.schema.json")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert load_suite(tmp_path / "s.yaml").intervals.resamples == 500
    doc["intervals"] = {"resamples": 10, "sed": 1}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SuiteError) as e:
        load_suite(tmp_path / "s.yaml")
    assert "intervals.resamples" in str(e.value) and "intervals.sed" in str(e.value)


def test_an_eval_between_two_simulated_frontiers_reports_and_gates_on_intervals(tmp_path, monkeypatch, cli):
    """The whole eval path with no model: the reference frontier at 20% error as the candidate,
    at 5% as the baseline. The gate on the paired lower bound fails, the point gate's
    comparison is flagged as not resolved, and the report's intervals recompute from its rows."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "eval"
    gate = "candidate.field_f1 >= baseline.field_f1 - 0.02 or delta.field_f1.lo >= 0"
    result = cli("eval", "ticket-extraction", "--candidate", "reference:ticket-extraction@0.2",
                 "--baseline", "reference:ticket-extraction@0.05", "--gate", gate, "-o", out, "--json")
    report = json.loads((out / "report.json").read_text())
    assert result.exit_code == 1, result.output  # 0.96 vs 0.99 field F1, and the lower bound is below 0
    comparisons = report["gate"]["comparisons"]
    assert [c["held"] for c in comparisons] == [False, False] and comparisons[1]["bounded"]
    assert comparisons[1]["left"] == report["delta"]["field_f1"]["lo"] < 0
    assert report["intervals"]["n"] == 60 and report["intervals"]["resamples"] == 1000
    # recompute: the same rows, the same seeded draws
    from gekro_ft.eval.suite import load_suite, with_gate

    suite = with_gate(load_suite("ticket-extraction"), gate)
    again = paired_intervals(suite.metrics, ("exact_match", 1.0), suite.gate,
                             [e["candidate"]["scores"] for e in report["examples"]],
                             [e["baseline"]["scores"] for e in report["examples"]],
                             resamples=1000, seed=0, confidence=0.95)
    assert again["delta"] == report["delta"]
    assert again["candidate"] == report["sides"]["candidate"]["intervals"]
    md = (out / "report.md").read_text()
    assert "95% CI (paired)" in md and "seeded paired bootstrap" in md
