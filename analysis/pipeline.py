"""Pipeline-level statistics of one comparison, arm A against reference B on one metric (Bouthillier et al.,
"Accounting for Variance in Machine Learning Benchmarks", MLSys 2021): a run of an arm is its whole pipeline — a
search replicate's pick trained on a seed — so the unit is a confirmation run nested in its search replicate,
and the spread between replicates (the search's own variance) is part of every interval and test.

**Input.** Each arm's runs as a :class:`Grid`, replicates x seeds (both arms on the same seeds, in one order):
the metric's ``values`` and the ``feasible`` flag of each run (every spec constraint met; a missing, diverged or
unfinished run is not feasible). A cell is *scored* (feasible, with a value), a *loss* (not feasible, whatever
its value: below every feasible run, the ranking rule of ``study.protocol.ranking``) or a *gap* (feasible but the
metric was not measured at this epoch: left out of everything).

**Pairs.** Run (i, s) of A meets run (j, s) of B: the same seed, since every replicate of every arm runs the
spec's seeds and a seed fixes the data and the initialisation (the pairing unit). *Crossed* (default): every
replicate of A meets every replicate of B, the searches being independent. *Matched*: a derived arm against the
arm it was made from (a distilled baseline's replicate i is made from replicate i's runs): only i == j.

**What it computes.**

- ``mean_diff``: A - B over the *feasible pairs* (both runs scored), averaged over seeds within each pair of
  replicates, then over the pairs of replicates (each replicate pair weighs the same: a pipeline is one draw);
  ``n_feasible_pairs`` counts the (replicate of A, replicate of B, seed) pairs it rests on.
- ``p_better``: P(A beats B), the chance that a random replicate's pick of A on a random seed ranks above a random
  replicate's pick of B on that seed — feasible first (a feasible run beats an infeasible one; two infeasible
  runs tie: both are losses, whatever they score), then the metric in its direction; ties count one half.
- A two-level bootstrap (``RESAMPLES`` draws, generator seeded by ``seed``: deterministic) for both: each draw
  takes, in this order, ``rng.integers(0, Ra, (resamples, Ra))`` replicates of A, ``rng.integers(0, Rb,
  (resamples, Rb))`` replicates of B (matched: B's are A's), then ``rng.integers(0, S, (resamples, S))`` seeds,
  one seed draw shared by every resampled replicate of both arms (seeds are crossed with replicates and arms: a
  draw of its own per replicate would break the pairs). Percentile intervals at ``CONFIDENCE``.
- The replicate-level test behind the verdict (Holm is applied to its p-value, ``analysis.stats``): Welch's t-test
  on the replicates — the per-replicate means of the pair differences, A's replicates (rows) against B's
  (columns), so that both arms' search variance enters with its own degrees of freedom; matched: a one-sample
  t-test on the per-replicate differences. Why not the bootstrap's own p-value: with 2-4 replicates a percentile
  bootstrap cannot see beyond the replicates it has (2 against 2 gives 16 distinct draws) and is far too
  confident; the t-test pays for few replicates in its degrees of freedom. The verdict needs both: Holm p < alpha
  *and* the bootstrap interval excluding zero. Equivalence: the two one-sided Welch (matched: one-sample) tests
  against the spec's margin.
- The seed-level paired t-test of earlier versions (per-seed means of each arm's scored runs, paired by seed), as
  ``seed_*`` columns: the verdict's test when an arm has fewer than two replicates with a feasible pair (the
  search's own variance is then unmeasured, and the row's ``level`` says ``seed``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from .stats import ALPHA, CONFIDENCE, POWER, SPREAD_FLOOR, detectable_difference, paired_test, seeds_needed

RESAMPLES = 2000
MIN_RUNS = 3  # P(A beats B) from fewer runs per arm is "too few" (a 1 [1, 1] from two runs means nothing)
PIPELINE, SEED = "pipeline", "seed"  # the level a verdict rests on


@dataclass(frozen=True)
class Grid:
    """One arm's runs on a comparison's seeds: ``values`` and ``feasible``, each (replicates, seeds)."""

    values: np.ndarray
    feasible: np.ndarray

    @classmethod
    def of(cls, values, feasible) -> "Grid":
        values = np.atleast_2d(np.asarray(values, dtype=float))
        return cls(values, np.broadcast_to(np.asarray(feasible, dtype=bool), values.shape).copy())

    @property
    def scored(self) -> np.ndarray:
        return self.feasible & ~np.isnan(self.values)

    @property
    def counted(self) -> np.ndarray:
        """Scored runs and losses (every cell but the gaps)."""
        return ~self.feasible | ~np.isnan(self.values)


def pair_arrays(a: Grid, b: Grid, mode: str, matched: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``wins[i, j, s]``: run (i, s) of A against run (j, s) of B in the ranking order (1 A ranks above, 0.5 tie,
    0 below; NaN: not a pair), and ``diffs[i, j, s]``: A - B where both are scored (NaN elsewhere)."""
    sign = 1.0 if mode == "max" else -1.0
    a_ok, b_ok = a.scored[:, None, :], b.scored[None, :, :]
    a_loss, b_loss = ~a.feasible[:, None, :], ~b.feasible[None, :, :]
    with np.errstate(invalid="ignore"):
        raw = a.values[:, None, :] - b.values[None, :, :]
        ahead = sign * raw
        wins = np.where(a_ok & b_ok, np.where(ahead > 0, 1.0, np.where(ahead < 0, 0.0, 0.5)), np.nan)
    wins = np.where(a_ok & b_loss, 1.0, wins)
    wins = np.where(a_loss & b_ok, 0.0, wins)
    wins = np.where(a_loss & b_loss, 0.5, wins)
    diffs = np.where(a_ok & b_ok, raw, np.nan)
    if matched:
        same = np.eye(a.values.shape[0], b.values.shape[0], dtype=bool)[:, :, None]
        wins, diffs = np.where(same, wins, np.nan), np.where(same, diffs, np.nan)
    return wins, diffs


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` indices appears in each row of ``draws``."""
    return (draws[:, :, None] == np.arange(n)).sum(axis=1).astype(float)


def _pair_weights(wa: np.ndarray, wb: np.ndarray, matched: bool) -> np.ndarray:
    """(draws, Ra, Rb): how often each pair of replicates is drawn (matched: replicate i with itself)."""
    if matched:
        return wa[:, :, None] * np.eye(wa.shape[1], wb.shape[1])[None]
    return wa[:, :, None] * wb[:, None, :]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(num), math.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def estimates(wins, diffs, wa, wb, ws, matched: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(A beats B) and the mean difference for each row of weights (``wa`` (draws, Ra), ``wb`` (draws, Rb), ``ws``
    (draws, S): how often each replicate and seed is drawn; rows of ones: the data as they are), and the per
    replicate pair mean differences (draws, Ra, Rb)."""
    pair = _pair_weights(wa, wb, matched)
    valid = ~np.isnan(wins)
    p = _ratio(np.einsum("kij,ks,ijs->k", pair, ws, np.where(valid, wins, 0.0)),
               np.einsum("kij,ks,ijs->k", pair, ws, valid.astype(float)))
    both = ~np.isnan(diffs)
    per_pair = _ratio(np.einsum("ks,ijs->kij", ws, np.where(both, diffs, 0.0)),
                      np.einsum("ks,ijs->kij", ws, both.astype(float)))
    has = ~np.isnan(per_pair)
    diff = _ratio(np.einsum("kij,kij->k", pair, np.where(has, per_pair, 0.0)), np.einsum("kij,kij->k", pair, has))
    return p, diff, per_pair


def _interval(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return math.nan, math.nan
    low, high = np.percentile(draws, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def _bootstrap(a: Grid, b: Grid, mode: str, matched: bool, resamples: int,
               seed: int) -> tuple[dict[str, float], np.ndarray]:
    if matched and a.values.shape != b.values.shape:
        raise ValueError(f"matched replicates need grids of one shape, not {a.values.shape} and {b.values.shape}")
    wins, diffs = pair_arrays(a, b, mode, matched)
    (ra, n_seeds), rb = a.values.shape, b.values.shape[0]
    p, diff, per_pair = estimates(wins, diffs, np.ones((1, ra)), np.ones((1, rb)), np.ones((1, n_seeds)), matched)
    rng = np.random.default_rng(seed)
    draw_a = rng.integers(0, ra, (resamples, ra))
    draw_b = draw_a if matched else rng.integers(0, rb, (resamples, rb))
    draw_s = rng.integers(0, n_seeds, (resamples, n_seeds))
    p_draws, diff_draws, _ = estimates(wins, diffs, _counts(draw_a, ra), _counts(draw_b, rb),
                                       _counts(draw_s, n_seeds), matched)
    (low, high), (p_low, p_high) = _interval(diff_draws), _interval(p_draws)
    return ({"mean_diff": float(diff[0]), "boot_low": low, "boot_high": high, "p_better": float(p[0]),
             "p_better_low": p_low, "p_better_high": p_high, "n_feasible_pairs": int((~np.isnan(diffs)).sum())},
            per_pair[0])


def bootstrap(a: Grid, b: Grid, mode: str, matched: bool = False, resamples: int = RESAMPLES,
              seed: int = 0) -> dict[str, float]:
    """The point estimates of the mean difference and P(A beats B), their two-level bootstrap intervals
    (``boot_low``/``boot_high``, ``p_better_low``/``p_better_high``) and the feasible pairs."""
    return _bootstrap(a, b, mode, matched, resamples, seed)[0]


def _power(effect_size: float | None = None, nobs1: float | None = None, ratio: float = 1.0) -> float:
    """Welch's two-sample t-test at ``ALPHA`` and ``POWER``: the standardised effect it detects with ``nobs1``
    replicates (and ``ratio`` times as many in the reference), or the replicates an arm needs for ``effect_size``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver's chatter for tiny samples
        value = TTestIndPower().solve_power(effect_size=effect_size, nobs1=nobs1, ratio=ratio, alpha=ALPHA,
                                            power=POWER, alternative="two-sided")
    value = float(np.squeeze(value))
    return value if math.isfinite(value) else math.nan


_detectable_effect = lru_cache(maxsize=None)(_power)  # depends on the replicates alone: solved once per design


def replicate_test(per_pair: np.ndarray, diff: float, margin: float | None, matched: bool) -> dict[str, float]:
    """The replicate-level test of ``diff`` from the per replicate pair mean differences (Ra, Rb): its p-value,
    the TOST p-value against ±``margin``, the smallest difference it could detect, the replicates per arm that
    ``margin`` would need, and the replicates of each arm it rests on (see the module docstring)."""
    nan = math.nan
    out = {"p_value": nan, "p_equivalent": nan, "detectable": nan, "replicates_for_margin": nan}
    if matched:
        x = np.diagonal(per_pair)
        x = x[~np.isnan(x)]
        out.update(replicates_arm=len(x), replicates_reference=len(x))
        if len(x) < 2:
            return out
        sd = float(np.std(x, ddof=1))
        out.update(detectable=detectable_difference(sd, len(x)), replicates_for_margin=seeds_needed(sd, margin))
        if sd > SPREAD_FLOOR * max(1.0, abs(diff)):
            out["p_value"] = float(stats.ttest_1samp(x, 0.0).pvalue)
            if margin is not None and margin > 0:
                out["p_equivalent"] = max(float(stats.ttest_1samp(x, -margin, alternative="greater").pvalue),
                                          float(stats.ttest_1samp(x, margin, alternative="less").pvalue))
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without a feasible pair: an empty slice
        rows, cols = np.nanmean(per_pair, axis=1), np.nanmean(per_pair, axis=0)
    rows, cols = rows[~np.isnan(rows)], cols[~np.isnan(cols)]
    out.update(replicates_arm=len(rows), replicates_reference=len(cols))
    if len(rows) < 2 or len(cols) < 2:
        return out
    sr, sc = float(np.std(rows, ddof=1)), float(np.std(cols, ddof=1))
    pooled = math.sqrt(((len(rows) - 1) * sr ** 2 + (len(cols) - 1) * sc ** 2) / (len(rows) + len(cols) - 2))
    if pooled > 0:
        out["detectable"] = _detectable_effect(None, len(rows), len(cols) / len(rows)) * pooled
        if margin is not None and margin > 0:
            needed = _power(effect_size=margin / pooled, ratio=1.0)
            out["replicates_for_margin"] = float(math.ceil(max(needed, 2.0))) if needed == needed else nan
    if math.sqrt(sr ** 2 / len(rows) + sc ** 2 / len(cols)) <= SPREAD_FLOOR * max(1.0, abs(diff)):
        return out

    def welch(shift: float, alternative: str = "two-sided") -> float:
        return float(stats.ttest_ind_from_stats(diff + shift, sr, len(rows), 0.0, sc, len(cols), equal_var=False,
                                                alternative=alternative).pvalue)
    out["p_value"] = welch(0.0)
    if margin is not None and margin > 0:
        out["p_equivalent"] = max(welch(margin, "greater"), welch(-margin, "less"))
    return out


def seed_test(a: Grid, b: Grid, margin: float | None) -> dict[str, float]:
    """The seed-level paired t-test (``analysis.stats.paired_test``) of each arm's mean over its scored runs on a
    seed, over the seeds where both have one, as ``seed_*`` columns (``n_pairs``: those seeds), and the seeds a
    paired test at that spread would need to detect ``margin``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a seed without a scored run
        a_mean = np.nanmean(np.where(a.scored, a.values, np.nan), axis=0)
        b_mean = np.nanmean(np.where(b.scored, b.values, np.nan), axis=0)
    both = ~np.isnan(a_mean) & ~np.isnan(b_mean)
    row = paired_test(a_mean[both], b_mean[both], margin)
    spread = float(np.std(a_mean[both] - b_mean[both], ddof=1)) if both.sum() > 1 else math.nan
    return {"n_pairs": row["n_pairs"], "seed_mean_diff": row["mean_diff"], "seed_ci_low": row["ci_low"],
            "seed_ci_high": row["ci_high"], "seed_p_value": row["p_value"], "seed_p_equivalent": row["p_equivalent"],
            "seed_detectable": row["detectable"], "seeds_for_margin": seeds_needed(spread, margin)}


def compare_grids(a: Grid, b: Grid, mode: str, margin: float | None, matched: bool = False,
                  resamples: int = RESAMPLES, seed: int = 0) -> dict[str, float | int | str]:
    """One comparison at both levels, and the columns its verdict rests on: ``level`` ``pipeline`` (both arms
    have two or more replicates with a feasible pair: the bootstrap interval and the replicate-level test) or
    ``seed`` (the seed-level t-interval and paired test). Also P(A beats B) (NaN with fewer than ``MIN_RUNS`` runs
    in an arm) and each arm's feasible runs out of its runs on the grid."""
    boot, per_pair = _bootstrap(a, b, mode, matched, resamples, seed)
    replicate = replicate_test(per_pair, boot["mean_diff"], margin, matched)
    seeds = seed_test(a, b, margin)
    pipeline = replicate["replicates_arm"] >= 2 and replicate["replicates_reference"] >= 2
    if pipeline:
        main = {"mean_diff": boot["mean_diff"], "ci_low": boot["boot_low"], "ci_high": boot["boot_high"],
                "p_value": replicate["p_value"], "p_equivalent": replicate["p_equivalent"],
                "detectable": replicate["detectable"]}
    else:
        main = {"mean_diff": seeds["seed_mean_diff"], "ci_low": seeds["seed_ci_low"], "ci_high": seeds["seed_ci_high"],
                "p_value": seeds["seed_p_value"], "p_equivalent": seeds["seed_p_equivalent"],
                "detectable": seeds["seed_detectable"]}
    p_better = {k: boot[k] for k in ("p_better", "p_better_low", "p_better_high")}
    if min(int(a.counted.sum()), int(b.counted.sum())) < MIN_RUNS:
        p_better = dict.fromkeys(p_better, math.nan)
    return {"level": PIPELINE if pipeline else SEED, **main, "n_pairs": seeds["n_pairs"],
            "n_feasible_pairs": boot["n_feasible_pairs"], "replicates_arm": replicate["replicates_arm"],
            "replicates_reference": replicate["replicates_reference"],
            "feasible_arm": int(a.feasible.sum()), "runs_arm": int(a.feasible.size),
            "feasible_reference": int(b.feasible.sum()), "runs_reference": int(b.feasible.size),
            **{k: v for k, v in seeds.items() if k != "n_pairs"},
            "replicates_for_margin": replicate["replicates_for_margin"], **p_better}
