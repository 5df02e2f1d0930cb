"""The bootstrap core: seeded, paired, and honest about what it could not resample."""

from __future__ import annotations

import math

import pytest

from gekro_ft.intervals import bootstrap


def _mean(values):
    return lambda idx: {"mean": sum(values[i] for i in idx) / len(idx)}


def test_same_seed_same_interval_and_the_point_is_the_plain_figure():
    values = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 3
    a, b = bootstrap(len(values), _mean(values), seed=7)["mean"], bootstrap(len(values), _mean(values), seed=7)["mean"]
    assert a == b
    assert a.point == pytest.approx(21 / 30)
    assert a.lo < a.point < a.hi
    assert a.n == 30 and a.confidence == 0.95
    scores = [(i * 37 % 101) / 100 for i in range(30)]  # continuous: another seed moves the bounds
    assert bootstrap(30, _mean(scores), seed=7)["mean"] != bootstrap(30, _mean(scores), seed=8)["mean"]


def test_interval_narrows_with_more_examples():
    small = [1, 0] * 10
    large = [1, 0] * 500
    w_small = bootstrap(len(small), _mean(small))["mean"].half_width
    w_large = bootstrap(len(large), _mean(large), resamples=300)["mean"].half_width
    assert w_large < w_small / 3  # sqrt(50) ~ 7x narrower in theory


def test_paired_difference_is_narrower_than_the_sides():
    """Two sides that agree on most examples: their difference is tightly known even though
    each side's own rate is not."""
    cand = [1] * 18 + [0] * 12
    base = [1] * 17 + [0] * 13  # the same examples right, one more wrong
    stat = lambda idx: {"cand": sum(cand[i] for i in idx) / len(idx),  # noqa: E731
                        "delta": sum(cand[i] - base[i] for i in idx) / len(idx)}
    out = bootstrap(30, stat)
    assert out["delta"].point == pytest.approx(1 / 30)
    assert out["delta"].half_width < out["cand"].half_width / 2
    assert out["delta"].lo >= 0  # a difference that is never negative on any example


def test_figures_without_finite_draws_are_nan_not_made_up():
    out = bootstrap(5, lambda idx: {"x": math.nan, "y": 1.0})
    assert math.isnan(out["x"].lo) and math.isnan(out["x"].hi)
    assert out["y"].lo == out["y"].hi == 1.0


@pytest.mark.parametrize("n, confidence", [(0, 0.95), (3, 1.0), (3, 0.0)])
def test_refuses_what_cannot_be_resampled(n, confidence):
    with pytest.raises(ValueError):
        bootstrap(n, lambda idx: {"x": 1.0}, confidence=confidence)
