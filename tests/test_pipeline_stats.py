"""The verdicts at the level of the whole pipeline (analysis/pipeline.py, analysis/compare.py, analysis/ablation.py)
on tables written by hand (tests/hand_tables.py): P(A beats B), the mean difference and their two-level bootstrap
intervals against a brute-force enumeration; a seed-level "better" that the replicates do not support; runs that
miss the constraints ranked below every feasible run; one Holm family over every ablation option.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.ablation import answers, paired_vs_centre
from analysis.compare import paired_vs_fixed, winner
from analysis.conclusions import conclusions_cells, conclusions_table
from analysis.pipeline import PIPELINE, SEED, Grid, bootstrap, compare_grids
from analysis.stats import BETTER, EQUIVALENT, INCONCLUSIVE, decide, describe
from hand_tables import SEEDS, add_ablation, hand_spec, hand_tables

import pandas as pd

EMPTY = pd.DataFrame()


def brute(a, fa, b, fb, mode, rows_a, rows_b, seeds, matched=False) -> tuple[float, float]:
    """P(A beats B) and the mean difference by enumeration over the (multi)sets of replicates and seeds: every
    pair of A's and B's replicates (matched: the same draw), every seed; a feasible run beats an infeasible one,
    two infeasible runs tie; the difference: per pair of replicates the mean over seeds where both are feasible,
    then the mean over the pairs of replicates that have one."""
    sign = 1 if mode == "max" else -1
    score = total = 0.0
    per_pair = []
    pairs = list(zip(rows_a, rows_a)) if matched else list(itertools.product(rows_a, rows_b))
    for i, j in pairs:
        diffs = []
        for s in seeds:
            x, y, ok_x, ok_y = a[i][s], b[j][s], fa[i][s], fb[j][s]
            if ok_x and ok_y:
                score += 1.0 if sign * (x - y) > 0 else 0.5 if x == y else 0.0
                diffs.append(x - y)
            else:
                score += 1.0 if ok_x else 0.0 if ok_y else 0.5
            total += 1
        if diffs:
            per_pair.append(sum(diffs) / len(diffs))
    return score / total, (sum(per_pair) / len(per_pair) if per_pair else math.nan)


def brute_bootstrap(a, fa, b, fb, mode, resamples, seed, matched=False):
    """The two-level bootstrap re-implemented with loops: the same generator calls as analysis.pipeline documents
    (A's replicates, B's replicates unless matched, then the seeds, each as one (resamples, n) draw)."""
    ra, rb, n = len(a), len(b), len(a[0])
    rng = np.random.default_rng(seed)
    draw_a = rng.integers(0, ra, (resamples, ra))
    draw_b = draw_a if matched else rng.integers(0, rb, (resamples, rb))
    draw_s = rng.integers(0, n, (resamples, n))
    out = [brute(a, fa, b, fb, mode, draw_a[k], draw_b[k], draw_s[k], matched) for k in range(resamples)]
    p, d = np.array(out).T
    return np.percentile(p, [2.5, 97.5]), np.nanpercentile(d, [2.5, 97.5])


A = [[0.70, 0.72, 0.65], [0.60, 0.61, 0.66], [0.80, 0.66, 0.75]]
FA = [[True, True, False], [True, True, True], [False, True, True]]
B = [[0.66, 0.70, 0.65], [0.62, 0.61, 0.64], [0.64, 0.64, 0.69]]
FB = [[True, True, True], [True, False, True], [True, True, False]]


def test_a_run_that_misses_the_constraints_ranks_below_every_feasible_one_by_hand():
    # One seed. A: 0.7 feasible, 0.9 infeasible; B: 0.6 feasible, 0.8 infeasible. Pairs: 0.7 vs 0.6 a win, 0.7 vs
    # 0.8 (infeasible) a win, 0.9 (infeasible) vs 0.6 a loss, two infeasible runs a tie: (1 + 1 + 0 + 0.5) / 4.
    # The difference: over the one pair in which both are feasible, 0.7 - 0.6.
    got = bootstrap(Grid.of([[0.7], [0.9]], [[True], [False]]), Grid.of([[0.6], [0.8]], [[True], [False]]), "max")
    assert got["p_better"] == pytest.approx(2.5 / 4) and got["mean_diff"] == pytest.approx(0.1)
    assert got["n_feasible_pairs"] == 1


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("matched", [False, True])
def test_p_beats_and_the_difference_equal_a_brute_force_enumeration(mode, matched):
    """Two arms, 3 replicates x 3 seeds, infeasible runs and a tie in both: the estimates and the bootstrap
    intervals are those of the enumeration, with the same generator draws."""
    a, b = Grid.of(A, FA), Grid.of(B, FB)
    got = bootstrap(a, b, mode, matched=matched, resamples=400, seed=7)
    p, d = brute(A, FA, B, FB, mode, range(3), range(3), range(3), matched)
    assert got["p_better"] == pytest.approx(p) and got["mean_diff"] == pytest.approx(d)
    pairs = [(i, j) for i in range(3) for j in range(3) if not matched or i == j]
    assert got["n_feasible_pairs"] == sum(FA[i][s] and FB[j][s] for i, j in pairs for s in range(3))
    p_interval, d_interval = brute_bootstrap(A, FA, B, FB, mode, 400, 7, matched)
    assert [got["p_better_low"], got["p_better_high"]] == pytest.approx(list(p_interval))
    assert [got["boot_low"], got["boot_high"]] == pytest.approx(list(d_interval))
    assert bootstrap(a, b, mode, matched=matched, resamples=400, seed=7) == got  # seeded: deterministic
    assert 0.0 <= got["p_better_low"] <= got["p_better"] <= got["p_better_high"] <= 1.0


def test_a_seed_level_better_that_the_replicates_do_not_support_is_inconclusive():
    """Every seed says A is ahead by about 0.14 (the seed-level paired test: p < 0.001), but A's three searches
    found 0.91, 0.51 and 0.80: a fourth search may well land below B. The replicate-level interval includes zero."""
    a = Grid.of([[0.90, 0.91, 0.92], [0.50, 0.51, 0.52], [0.80, 0.81, 0.79]], True)
    b = Grid.of([[0.60, 0.60, 0.61], [0.62, 0.60, 0.60], [0.59, 0.60, 0.60]], True)
    row = compare_grids(a, b, "max", margin=0.01)
    assert row["level"] == PIPELINE and row["replicates_arm"] == row["replicates_reference"] == 3
    assert row["seed_p_value"] < 0.05 and row["seed_ci_low"] > 0  # the seed-level test alone says better
    assert row["ci_low"] < 0 < row["ci_high"] and row["p_value"] > 0.05
    # With every run feasible, the replicate-level test is Welch's t-test of A's replicate means against B's.
    welch = stats.ttest_ind(a.values.mean(axis=1), b.values.mean(axis=1), equal_var=False).pvalue
    assert row["p_value"] == pytest.approx(welch, rel=1e-9)
    decided = decide(pd.DataFrame([{**row, "mode": "max"}]), ["mode"])
    assert decided["verdict"].iloc[0] == INCONCLUSIVE
    seed_level = {**row, "mode": "max", "mean_diff": row["seed_mean_diff"], "ci_low": row["seed_ci_low"],
                  "ci_high": row["seed_ci_high"], "p_value": row["seed_p_value"], "p_equivalent": math.nan}
    assert decide(pd.DataFrame([seed_level]), ["mode"])["verdict"].iloc[0] == BETTER  # what the old verdict said
    # The same tables through the analysis: fixed is B, controller A.
    tables = hand_tables(hand_spec(SEEDS[:3], 3), {"fixed": (b.values, True), "controller": (a.values, True)})
    final = paired_vs_fixed(tables)
    final = final[(final["metric"] == "triplet_r_A") & (final["budget"] == 1.0)].iloc[0]
    assert final["level"] == PIPELINE and final["verdict"] == INCONCLUSIVE
    assert final["mean_diff"] == pytest.approx(row["mean_diff"]) and final["n_feasible_pairs"] == 27
    assert "bootstrap over replicates, then seeds" in describe(next(final.to_frame().T.itertuples()))


def test_matched_replicates_test_the_per_replicate_differences():
    """A baseline made from the arm's own runs (replicate i from replicate i): the replicate-level test is the
    one-sample t-test of the per-replicate mean differences, and the search's variance shared by the pair cancels."""
    a = Grid.of([[0.90, 0.91, 0.92], [0.50, 0.51, 0.52], [0.80, 0.81, 0.79]], True)
    b = Grid.of(a.values - [[0.020, 0.022, 0.018], [0.024, 0.025, 0.023], [0.017, 0.018, 0.016]], True)
    matched = compare_grids(a, b, "max", margin=0.005, matched=True)
    per_replicate = (a.values - b.values).mean(axis=1)
    assert matched["p_value"] == pytest.approx(stats.ttest_1samp(per_replicate, 0.0).pvalue, rel=1e-9)
    assert matched["level"] == PIPELINE and matched["n_feasible_pairs"] == 9
    crossed = compare_grids(a, b, "max", margin=0.005)  # as if the searches were independent: far less sure
    assert matched["p_value"] < 0.05 < crossed["p_value"]


def test_an_arm_ahead_on_runs_that_miss_the_constraints_is_never_better():
    """The controller is ahead by 0.2 wherever both runs are feasible, consistently over its three searches (the
    replicate-level test rejects), but misses the constraint on 2 of its 9 runs where fixed meets it on all 9."""
    controller = [[0.80, 0.81, 0.95], [0.81, 0.80, 0.79], [0.97, 0.79, 0.80]]
    feasible = [[True, True, False], [True, True, True], [False, True, True]]
    fixed = [[0.60, 0.61, 0.60], [0.61, 0.60, 0.59], [0.60, 0.59, 0.60]]
    tables = hand_tables(hand_spec(SEEDS[:3], 3), {"fixed": (fixed, True), "controller": (controller, feasible)})
    paired = paired_vs_fixed(tables)
    row = paired[(paired["metric"] == "triplet_r_A") & (paired["budget"] == 1.0)].iloc[0]
    assert row["p_holm"] < 0.05 and row["ci_low"] > 0  # the difference on the feasible pairs is clear
    assert row["verdict"] == INCONCLUSIVE and row["feasibility_capped"]
    assert (row["feasible_arm"], row["runs_arm"], row["feasible_reference"]) == (7, 9, 9)
    assert row["n_feasible_pairs"] == 7 * 3  # each feasible controller run against fixed's 3 replicates
    # P(beats): the infeasible runs lose to each of fixed's runs on their seed: 7 * 3 wins of 27.
    assert row["p_better"] == pytest.approx(21 / 27)
    name, sentence = winner(tables, paired)
    assert name is None and "`controller` (feasible on 7/9 runs)" in sentence
    table = conclusions_table(tables, paired, EMPTY, EMPTY, EMPTY, EMPTY).set_index("arm")
    assert (table.loc["controller", "feasible_runs"], table.loc["controller", "runs"]) == (7, 9)
    assert table.loc["controller", "verdict"] == INCONCLUSIVE and table.loc["controller", "n_feasible_pairs"] == 21
    cells = conclusions_cells(tables, table.reset_index()).set_index("arm")
    assert cells.loc["controller", "feasible"] == "7/9"
    difference = cells.loc["controller"].filter(like="what the verdict rests on").iloc[0]
    assert "replicates × seeds bootstrap; 21 feasible pairs" in difference and "**inconclusive** (ahead" in difference
    # All feasible, the same values make it better.
    tables = hand_tables(hand_spec(SEEDS[:3], 3), {"fixed": (fixed, True), "controller": (controller, True)})
    paired = paired_vs_fixed(tables)
    assert paired[(paired["metric"] == "triplet_r_A") & (paired["budget"] == 1.0)]["verdict"].iloc[0] == BETTER


def test_one_replicate_is_a_verdict_per_seed_and_two_runs_are_too_few_for_p_beats():
    tables = hand_tables(hand_spec(SEEDS[:2], 1), {"fixed": ([[0.6, 0.61]], True), "controller": ([[0.7, 0.72]], True)})
    paired = paired_vs_fixed(tables)
    row = paired[(paired["metric"] == "triplet_r_A") & (paired["budget"] == 1.0)].iloc[0]
    assert row["level"] == SEED and row["mean_diff"] == pytest.approx(0.105)
    assert (row["ci_low"], row["p_value"]) == (row["seed_ci_low"], row["seed_p_value"])
    assert math.isnan(row["p_better"])  # 2 runs an arm: too few
    assert "the search's own variance unmeasured" in describe(next(row.to_frame().T.itertuples()))
    table = conclusions_table(tables, paired, EMPTY, EMPTY, EMPTY, EMPTY)
    cells = conclusions_cells(tables, table).set_index("arm")
    assert cells.loc["controller", "P(beats ref)"] == "too few runs"
    assert "seeds t, search variance unmeasured" in cells.loc["controller"].filter(like="rests on").iloc[0]


def test_the_ablation_is_one_holm_family_and_a_difference_inside_the_margin_is_equivalent():
    """Three options in two questions, 5 seeds, against the centre. Alone in its question, `encoder subset`
    (p = 0.041) would be better; corrected over all three options it is not. `sample` is ahead by 0.005 on every
    seed (p < 1e-6), inside the ±0.02 margin: equivalent, detectably different, never better."""
    centre = np.array([0.60, 0.62, 0.61, 0.63, 0.60])
    options = {("statistics", "encoder subset"): centre + [0.005, 0.055, 0.03, 0.05, 0.01],
               ("rho granularity", "sample"): centre + [0.005, 0.0052, 0.0049, 0.0051, 0.0048],
               ("rho granularity", "latent"): centre + [-0.05, 0.04, 0.0, 0.03, -0.02]}
    axes = {"statistics": {"encoder subset": {"arm.stats": ["KL_A", "KL_B", "rank"]}},
            "rho granularity": {"sample": {"arm.rho_granularity": "sample"},
                                "latent": {"arm.rho_granularity": "latent"}}}
    spec = hand_spec(SEEDS, 1, margin=0.02, ablate={"arm": "controller", "seeds": None, "axes": axes})
    tables = hand_tables(spec, {"fixed": ([centre - 0.1], True), "controller": ([centre], True)})
    plan = add_ablation(tables, {key: (values, True) for key, values in options.items()})
    paired = paired_vs_centre(tables, plan)
    final = paired[(paired["metric"] == "triplet_r_A") & (paired["budget"] == 1.0)].set_index("option")
    raw = {option: stats.ttest_rel(values, centre).pvalue for (_, option), values in options.items()}
    assert final["p_value"].to_dict() == pytest.approx(raw)
    holm = dict(zip(raw, multipletests(list(raw.values()), method="holm")[1]))
    assert final["p_holm"].to_dict() == pytest.approx(holm)  # one family: all three options together
    assert raw["encoder subset"] < 0.05 < holm["encoder subset"]  # per question it would have been better
    assert final.loc["encoder subset", "verdict"] == INCONCLUSIVE
    assert final.loc["sample", "verdict"] == EQUIVALENT and final.loc["sample", "p_holm"] < 0.05
    assert final.loc["sample", "detectably_different"] and final.loc["sample", "ci_low"] > 0
    rows = answers(tables, plan, paired).set_index("option")
    assert rows.loc["sample", "verdict"] == EQUIVALENT and "(detectably different)" in rows.loc["sample", "answer"]
    assert rows.loc["encoder subset", "verdict"] == INCONCLUSIVE and rows.loc["latent", "verdict"] == INCONCLUSIVE
