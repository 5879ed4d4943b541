"""The expected best of n search trials (analysis.tuning): exact from the order statistics, checked against a
brute-force enumeration of every subset on a small table."""

from __future__ import annotations

import itertools
import math

import pytest

from analysis.tuning import expected_best_of

# 7 trials: 5 qualify (ran every epoch, feasible), 2 never can be the pick (stopped, diverged, infeasible).
VALUES = [0.3, math.nan, 0.7, 0.5, math.nan, 0.9, 0.1]


def _brute_force(values: list[float], n: int) -> tuple[float, float]:
    """(mean of the best qualifying value over the subsets with one, share of subsets with one)."""
    bests = [max(q) for subset in itertools.combinations(values, n) if (q := [v for v in subset if v == v])]
    return (sum(bests) / len(bests) if bests else math.nan), len(bests) / math.comb(len(values), n)


@pytest.mark.parametrize("n", range(1, len(VALUES) + 1))
def test_expected_best_of_n_equals_every_subset_enumerated(n):
    qualifying = [v for v in VALUES if v == v]
    expected, p = expected_best_of(qualifying, len(VALUES), n)
    brute, share = _brute_force(VALUES, n)
    assert expected == pytest.approx(brute, rel=1e-12) and p == pytest.approx(share, rel=1e-12)


def test_expected_best_grows_with_n_and_ends_at_the_best():
    qualifying = [v for v in VALUES if v == v]
    curve = [expected_best_of(qualifying, len(VALUES), n)[0] for n in range(1, len(VALUES) + 1)]
    assert curve == sorted(curve) and curve[0] == pytest.approx(sum(qualifying) / len(qualifying))
    assert curve[-1] == pytest.approx(max(qualifying))
    assert expected_best_of([], 4, 2) == (pytest.approx(math.nan, nan_ok=True), 0.0)
