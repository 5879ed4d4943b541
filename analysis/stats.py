"""The statistics behind every verdict: t-intervals, paired t-tests, Holm's correction over a family of tests,
equivalence by two one-sided tests (TOST) and the smallest difference a design could detect.

A paired comparison of arm a against a reference b, on one metric, ends in one verdict:

- ``better`` / ``worse``: the paired t-test rejects "no difference" after Holm's correction over its family;
- ``equivalent``: not different, and the TOST with the spec's margin ±δ for the metric rejects "differs by δ
  or more", Holm-corrected over the family too;
- ``inconclusive``: neither; the report gives the smallest difference the design could detect (two-sided
  paired t-test at ``ALPHA``, 80% power, the observed spread of the differences);
- ``not tested``: fewer than two pairs, or differences without spread: no test was run.

Absence of evidence is never read as equivalence. With several search replicates, the differences are paired by
seed after averaging each arm over its replicates, and a ``better`` or ``worse`` verdict needs every replicate to
agree in sign (``analysis.compare``); :func:`p_better` gives the probability that the arm beats the reference.
statsmodels provides Holm (``multipletests``), the paired TOST (``ttost_paired``) and the power computation
(``TTestPower``, also :func:`seeds_needed`); scipy the t-test and t quantiles.
"""

from __future__ import annotations

import gc
import math
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
POWER = 0.8
SPREAD_FLOOR = 1e-9  # relative: a standard deviation of the differences below it counts as none
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, NOT_TESTED = "better", "worse", "equivalent", "inconclusive", "not tested"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, NOT_TESTED)


def t_interval(values, confidence: float = CONFIDENCE) -> dict[str, float]:
    """n, mean, sample std and the two-sided t confidence interval of the mean (NaN bounds when n < 2)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    low = high = math.nan
    if n > 1:
        half = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n)
        low, high = float(mean - half), float(mean + half)
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high}


def detectable_difference(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference a two-sided paired t-test on ``n`` pairs detects with ``power``, given
    the standard deviation ``std`` of the differences (NaN when it cannot be computed)."""
    if n < 2 or not std > 0:  # (NaN fails the comparison too)
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver's convergence chatter for tiny n
        effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(effect) * std


def seeds_needed(std: float, margin: float | None, alpha: float = ALPHA, power: float = POWER) -> float:
    """How many paired seeds a two-sided paired t-test needs to detect a difference of ``margin`` with ``power``,
    given the standard deviation ``std`` of the differences (NaN without a margin or a spread)."""
    if margin is None or not margin > 0 or not std > 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = TTestPower().solve_power(effect_size=margin / std, alpha=alpha, power=power, alternative="two-sided")
    n = float(np.squeeze(n))
    return float(math.ceil(max(n, 2.0))) if math.isfinite(n) else math.nan


def p_better(a: dict[int, list[float]], b: dict[int, list[float]], mode: str, resamples: int = 2000,
             seed: int = 0) -> dict[str, float]:
    """P(A beats B): over the seeds both have, the share of (a replicate of A, a replicate of B) pairs on the same
    seed in which A's value is better (``mode``: larger is better for max), ties counting one half — the chance
    that an arm's search-and-train beats the reference's on a fresh seed (Bouthillier et al., "Accounting for
    Variance in Machine Learning Benchmarks", MLSys 2021). Its 95% interval: a percentile bootstrap over the
    seeds (the unit of pairing), ``resamples`` times with a generator seeded by ``seed``. ``a`` and ``b`` map a
    seed to its values, one per replicate."""
    seeds = sorted(set(a) & set(b))
    sign = 1.0 if mode == "max" else -1.0

    def wins(seed_list) -> float:
        score = total = 0.0
        for s in seed_list:
            for x in a[s]:
                for y in b[s]:
                    d = sign * (x - y)
                    score += 1.0 if d > 0 else 0.5 if d == 0 else 0.0
                    total += 1.0
        return score / total if total else math.nan

    estimate = wins(seeds)
    if len(seeds) < 2:
        return {"p_better": estimate, "p_better_low": math.nan, "p_better_high": math.nan}
    rng = np.random.default_rng(seed)
    draws = [wins([seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]) for _ in range(resamples)]
    low, high = np.percentile(draws, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return {"p_better": estimate, "p_better_low": float(low), "p_better_high": float(high)}


def paired_test(a: np.ndarray, b: np.ndarray, margin: float | None) -> dict[str, float]:
    """a - b paired: n, mean and t-interval of the differences, the raw p-value of the paired t-test, the raw
    p-value of the TOST against ±``margin`` (NaN without a margin) and the detectable difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = t_interval(a - b)
    p = p_equivalent = math.nan
    # Differences equal up to rounding (1e-16 apart) have no spread to test: a t statistic of 1e15 means nothing.
    if diff["n"] > 1 and diff["std"] > SPREAD_FLOOR * max(1.0, abs(diff["mean"])):
        p = float(stats.ttest_rel(a, b).pvalue)
        if margin is not None and margin > 0:
            p_equivalent = float(ttost_paired(a, b, -margin, margin)[0])
    return {"n_pairs": diff["n"], "mean_diff": diff["mean"], "ci_low": diff["ci_low"], "ci_high": diff["ci_high"],
            "p_value": p, "p_equivalent": p_equivalent, "detectable": detectable_difference(diff["std"], diff["n"])}


@contextmanager
def _no_forced_collection() -> Iterator[None]:
    """statsmodels' Holm branch (0.15, ``multipletests``) calls ``gc.collect()`` on every call: 0.1-0.2 s each
    with pandas and scipy loaded, 100 s for the ~550 families of the quick study's analysis. The collection is
    housekeeping, not part of the correction; it is skipped for the call."""
    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.collect = collect


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values of one family (NaN entries are not tests and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = ~np.isnan(p)
    if tested.any():
        with _no_forced_collection():
            adjusted[tested] = multipletests(p[tested], alpha=ALPHA, method="holm")[1]
    return adjusted


def verdict(mean_diff: float, p_holm: float, p_equivalent_holm: float, mode: str) -> str:
    """The verdict of one comparison from its Holm-adjusted p-values (see the module docstring)."""
    if math.isnan(p_holm):
        return NOT_TESTED
    if p_holm < ALPHA:
        return BETTER if (mean_diff < 0) == (mode == "min") else WORSE
    if p_equivalent_holm < ALPHA:
        return EQUIVALENT
    return INCONCLUSIVE


def decide(rows: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """Add ``p_holm``, ``p_equivalent_holm`` and ``verdict`` to rows of :func:`paired_test` results (with a
    ``mode`` column), Holm-correcting within each group of the ``family`` columns."""
    rows = rows.copy()
    if rows.empty:
        return rows.assign(p_holm=[], p_equivalent_holm=[], verdict=[])
    rows["p_holm"] = math.nan
    rows["p_equivalent_holm"] = math.nan
    for _, group in rows.groupby(family, sort=False, dropna=False):
        rows.loc[group.index, "p_holm"] = holm(group["p_value"])
        rows.loc[group.index, "p_equivalent_holm"] = holm(group["p_equivalent"])
    rows["verdict"] = [verdict(r.mean_diff, r.p_holm, r.p_equivalent_holm, r.mode) for r in rows.itertuples()]
    return rows


def describe(row) -> str:
    """One comparison in words: difference, interval, corrected p, n, and what the verdict rests on."""
    if row.verdict == NOT_TESTED:
        why = "one pair" if row.n_pairs == 1 else ("no pair" if row.n_pairs == 0 else "differences without spread")
        shown = "" if math.isnan(row.mean_diff) else f"{row.mean_diff:+.4g}, "
        return f"{shown}not tested ({why}; n = {row.n_pairs})"
    text = (f"{row.mean_diff:+.4g} (95% CI {row.ci_low:+.4g} to {row.ci_high:+.4g}, Holm p = {row.p_holm:.3g}, "
            f"n = {row.n_pairs}): {row.verdict}")
    margin = getattr(row, "margin", math.nan)
    if row.verdict == EQUIVALENT:
        text += f" within ±{margin:.4g}"
    elif row.verdict == INCONCLUSIVE:
        text += f", could detect ≥ {row.detectable:.3g}" if row.detectable == row.detectable else ""
    return text
