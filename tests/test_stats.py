"""The statistics behind the verdicts (analysis/stats.py), checked against cases computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats import (
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    NOT_TESTED,
    WORSE,
    decide,
    describe,
    detectable_difference,
    holm,
    paired_test,
    seeds_needed,
    t_interval,
    verdict,
)


def _t2_cdf(t: float) -> float:
    """The t distribution's CDF with 2 degrees of freedom, in closed form: 1/2 + t / (2 sqrt(2 + t^2))."""
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def test_t_interval_matches_a_hand_computed_case():
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3), t(0.975, df=3) = 3.182446 (table) -> half-width 2.054260.
    ci = t_interval([1.0, 2.0, 3.0, 4.0])
    assert ci["n"] == 4 and ci["mean"] == 2.5
    assert ci["std"] == pytest.approx(math.sqrt(5 / 3))
    assert ci["ci_low"] == pytest.approx(2.5 - 2.054260, abs=1e-5)
    assert ci["ci_high"] == pytest.approx(2.5 + 2.054260, abs=1e-5)
    one = t_interval([3.0, float("nan")])
    assert one["n"] == 1 and one["mean"] == 3.0 and math.isnan(one["ci_low"])


def test_paired_test_and_tost_match_hand_computed_cases():
    # d = [0.5, 1.0, 0.8]: mean 0.76667, s = 0.25166, t = 5.2765 with 2 df; two-sided p = 1 - t / sqrt(2 + t^2).
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.2])
    out = paired_test(a, b, margin=2.0)
    mean = 0.766667
    s = math.sqrt(((0.5 - mean) ** 2 + (1.0 - mean) ** 2 + (0.8 - mean) ** 2) / 2)
    se = s / math.sqrt(3)
    t = mean / se
    assert out["n_pairs"] == 3 and out["mean_diff"] == pytest.approx(mean, abs=1e-6)
    assert out["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-6)
    assert out["ci_low"] == pytest.approx(mean - 4.302653 * s / math.sqrt(3), abs=1e-5)
    # TOST against +-2: H0 "mean <= -2" (t1 = (mean + 2) / se, p1 = 1 - F(t1)) and H0 "mean >= 2"
    # (t2 = (mean - 2) / se, p2 = F(t2)); the TOST p-value is the larger.
    p1, p2 = 1 - _t2_cdf((mean + 2) / se), _t2_cdf((mean - 2) / se)
    assert out["p_equivalent"] == pytest.approx(max(p1, p2), abs=1e-6)
    assert math.isnan(paired_test(a, b, margin=None)["p_equivalent"])


def test_holm_matches_a_hand_computed_case():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04, made non-decreasing -> 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.02, float("nan"), 0.2])  # a NaN is no test: the family has two members
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.2)
    assert holm([0.6, 0.5]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1


def test_detectable_difference_has_the_stated_power():
    # The power of a two-sided paired t-test for a true difference D, spread s, n pairs: the noncentral t with
    # n - 1 degrees of freedom and noncentrality D / (s / sqrt(n)) falls outside +-t(0.975, n - 1).
    for n, s in ((3, 0.01), (5, 0.02), (10, 1.0)):
        d = detectable_difference(s, n)
        crit = stats.t.ppf(0.975, n - 1)
        nc = d / (s / math.sqrt(n))
        power = 1 - stats.nct.cdf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
        assert power == pytest.approx(0.8, abs=1e-4)
    assert detectable_difference(0.02, 5) < detectable_difference(0.02, 3)  # more seeds, smaller difference
    assert math.isnan(detectable_difference(0.0, 5)) and math.isnan(detectable_difference(0.1, 1))


def test_verdicts():
    assert verdict(0.1, 0.01, float("nan"), "max") == BETTER
    assert verdict(0.1, 0.01, float("nan"), "min") == WORSE  # higher is worse when minimising
    assert verdict(0.001, 0.5, 0.01, "max") == EQUIVALENT
    assert verdict(0.001, 0.5, 0.2, "max") == INCONCLUSIVE
    assert verdict(0.3, float("nan"), float("nan"), "max") == NOT_TESTED
    one = paired_test(np.array([0.7]), np.array([0.6]), margin=0.01)  # one pair: no test
    assert one["n_pairs"] == 1 and math.isnan(one["p_value"])
    same = paired_test(np.array([0.7, 0.8]), np.array([0.6, 0.7]), margin=0.01)  # no spread: no test either
    assert math.isnan(same["p_value"])


def test_decide_corrects_within_each_family_only():
    rows = pd.DataFrame([
        {"arm": "x", "metric": "r", "mode": "max", "mean_diff": 0.1, "p_value": 0.03, "p_equivalent": np.nan},
        {"arm": "y", "metric": "r", "mode": "max", "mean_diff": 0.1, "p_value": 0.02, "p_equivalent": np.nan},
        {"arm": "x", "metric": "loss", "mode": "min", "mean_diff": 1.0, "p_value": 0.03, "p_equivalent": np.nan},
        {"arm": "y", "metric": "loss", "mode": "min", "mean_diff": 0.0, "p_value": 0.9, "p_equivalent": 0.004},
    ])
    out = decide(rows, ["metric"]).set_index(["arm", "metric"])
    # Family r: 0.02 * 2 = 0.04, max(0.03 * 1, 0.04) = 0.04 -> both better. Family loss: 0.03 * 2 = 0.06.
    assert out.loc[("x", "r"), "p_holm"] == pytest.approx(0.04) and out.loc[("x", "r"), "verdict"] == BETTER
    assert out.loc[("y", "r"), "verdict"] == BETTER
    assert out.loc[("x", "loss"), "p_holm"] == pytest.approx(0.06) and out.loc[("x", "loss"), "verdict"] == INCONCLUSIVE
    assert out.loc[("y", "loss"), "p_equivalent_holm"] == pytest.approx(0.004) and out.loc[("y", "loss"), "verdict"] == EQUIVALENT
    # Uncorrected, x on loss (p = 0.03) would have been called worse.


def test_describe_says_why_no_test_ran():
    row = pd.Series({"verdict": NOT_TESTED, "n_pairs": 1, "mean_diff": 0.05})
    assert describe(row.to_frame().T.itertuples().__next__()) == "+0.05, not tested (one pair; n = 1)"


def test_a_difference_needs_its_interval_to_exclude_zero_and_inside_the_margin_is_equivalent():
    """The verdict rests on the row's interval as well as its corrected p (a bootstrap interval need not agree
    with the t-test); a difference the TOST puts inside the margin is equivalent even when the difference test
    rejects too (detectably different), never better."""
    assert verdict(0.1, 0.01, float("nan"), "max", (0.02, 0.18)) == BETTER
    assert verdict(0.1, 0.01, float("nan"), "max", (-0.01, 0.18)) == INCONCLUSIVE  # the interval includes zero
    assert verdict(-0.1, 0.01, float("nan"), "max", (-0.2, -0.01)) == WORSE
    assert verdict(0.005, 1e-6, 1e-4, "max", (0.004, 0.006)) == EQUIVALENT
    rows = pd.DataFrame([
        {"metric": "r", "mode": "max", "mean_diff": 0.005, "ci_low": 0.004, "ci_high": 0.006, "p_value": 1e-6,
         "p_equivalent": 1e-4},
        {"metric": "r", "mode": "max", "mean_diff": 0.2, "ci_low": -0.05, "ci_high": 0.4, "p_value": 0.001,
         "p_equivalent": 0.9},
    ])
    out = decide(rows, ["metric"])
    assert out["verdict"].tolist() == [EQUIVALENT, INCONCLUSIVE]
    assert out["detectably_different"].tolist() == [True, False]
    text = describe(next(out.assign(n_pairs=3, detectable=0.1, margin=0.02).iloc[[0]].itertuples()))
    assert text.endswith("equivalent within ±0.02 (TOST Holm p = 0.0002) (detectably different)")


def test_seeds_needed_to_detect_a_margin_at_80_percent_power():
    # A paired t-test with sd 1 needs 10 pairs for a difference of 1 (TTestPower: 9.94); half the spread, 5.
    assert seeds_needed(1.0, 1.0) == 10.0 and seeds_needed(0.5, 1.0) == 5.0
    assert math.isnan(seeds_needed(0.0, 1.0)) and math.isnan(seeds_needed(1.0, None))
