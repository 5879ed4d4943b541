"""The statistics behind every verdict: t-intervals, paired t-tests, Holm's correction over a family of tests,
equivalence by two one-sided tests (TOST) and the smallest difference a design could detect.

A comparison of arm a against a reference b, on one metric, carries a difference, the interval and the p-values
its verdict rests on (``analysis.pipeline``: a bootstrap interval and a t-test over the search replicates at the
level of the whole pipeline, else the seed-level paired t-test), and ends in one verdict:

- ``equivalent``: the TOST with the spec's margin ±δ for the metric rejects "differs by δ or more",
  Holm-corrected over the family: a difference inside the margin is never ``better`` nor ``worse`` (when the
  difference test rejects too, ``detectably_different`` says so);
- ``better`` / ``worse``: not equivalent, the difference test rejects "no difference" after Holm's correction over
  its family, *and* the row's interval excludes zero;
- ``inconclusive``: neither; the report gives the smallest difference the design could detect (two-sided t-test
  at ``ALPHA``, 80% power, the observed spread);
- ``not tested``: fewer than two pairs, or differences without spread: no test was run.

Absence of evidence is never read as equivalence. statsmodels provides Holm (``multipletests``), the paired TOST
(``ttost_paired``) and the power computation (``TTestPower``, also :func:`seeds_needed`); scipy the t-test and t
quantiles.
"""

from __future__ import annotations

import gc
import math
import warnings
from contextlib import contextmanager
from functools import lru_cache
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
    return _detectable_effect(n, alpha, power) * std


@lru_cache(maxsize=None)
def _detectable_effect(n: int, alpha: float, power: float) -> float:
    """The standardised effect of :func:`detectable_difference`: it depends on n alone, and the root finder
    costs ~10 ms, once per n rather than once per comparison."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver's convergence chatter for tiny n
        return float(TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided"))


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


def excludes_zero(low: float, high: float) -> bool:
    """Whether an interval lies wholly on one side of zero (a NaN bound: no)."""
    return bool(low > 0 or high < 0)


def verdict(mean_diff: float, p_holm: float, p_equivalent_holm: float, mode: str,
            interval: tuple[float, float] | None = None) -> str:
    """The verdict of one comparison from its Holm-adjusted p-values and, when given, the interval it rests on
    (see the module docstring)."""
    if math.isnan(p_holm):
        return NOT_TESTED
    if p_equivalent_holm < ALPHA:
        return EQUIVALENT
    if p_holm < ALPHA and (interval is None or excludes_zero(*interval)):
        return BETTER if (mean_diff < 0) == (mode == "min") else WORSE
    return INCONCLUSIVE


def decide(rows: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """Add ``p_holm``, ``p_equivalent_holm``, ``verdict`` and ``detectably_different`` (equivalent, yet the
    difference test rejects) to rows of comparisons (``mean_diff``, ``p_value``, ``p_equivalent``, ``mode``, and
    ``ci_low``/``ci_high`` where the verdict needs its interval to exclude zero), Holm-correcting within each
    group of the ``family`` columns."""
    rows = rows.copy()
    if rows.empty:
        return rows.assign(p_holm=[], p_equivalent_holm=[], verdict=[], detectably_different=[])
    rows["p_holm"] = math.nan
    rows["p_equivalent_holm"] = math.nan
    for _, group in rows.groupby(family, sort=False, dropna=False):
        rows.loc[group.index, "p_holm"] = holm(group["p_value"])
        rows.loc[group.index, "p_equivalent_holm"] = holm(group["p_equivalent"])
    bounds = "ci_low" in rows and "ci_high" in rows
    rows["verdict"] = [verdict(r.mean_diff, r.p_holm, r.p_equivalent_holm, r.mode,
                               (r.ci_low, r.ci_high) if bounds else None) for r in rows.itertuples()]
    rows["detectably_different"] = (rows["verdict"] == EQUIVALENT) & (rows["p_holm"] < ALPHA)
    return rows


def _basis(row) -> str:
    """What a row's interval and p-value rest on, in words (rows without a ``level`` column: nothing)."""
    level = getattr(row, "level", None)
    if level == "pipeline":
        return (f"bootstrap over replicates, then seeds; t-test over replicates; {row.replicates_arm} vs "
                f"{row.replicates_reference} replicates, {row.n_feasible_pairs} feasible pairs")
    if level == "seed" and getattr(row, "replicate_pairs", None) == "matched":
        return "over seeds, each run paired with the run it was made from"
    if level == "seed":
        fewest = min(getattr(row, "replicates_arm", 1), getattr(row, "replicates_reference", 1))
        return (f"over seeds; per seed only: {fewest} search replicate(s) with a feasible pair, the search's own "
                "variance unmeasured")
    return ""


def describe(row) -> str:
    """One comparison in words: difference, the interval the verdict rests on (labelled), corrected p, n, and
    the verdict with what qualifies it."""
    if row.verdict == NOT_TESTED:
        why = "one pair" if row.n_pairs == 1 else ("no pair" if row.n_pairs == 0 else "differences without spread")
        shown = "" if math.isnan(row.mean_diff) else f"{row.mean_diff:+.4g}, "
        return f"{shown}not tested ({why}; n = {row.n_pairs})"
    basis = _basis(row)
    text = (f"{row.mean_diff:+.4g} (95% CI {row.ci_low:+.4g} to {row.ci_high:+.4g}, Holm p = {row.p_holm:.3g}, "
            f"n = {row.n_pairs}{'; ' + basis if basis else ''}): {row.verdict}")
    margin = getattr(row, "margin", math.nan)
    if row.verdict == EQUIVALENT:
        text += f" within ±{margin:.4g}"
        tost = getattr(row, "p_equivalent_holm", math.nan)
        text += f" (TOST Holm p = {tost:.3g})" if tost == tost else ""
        text += " (detectably different)" if getattr(row, "detectably_different", False) else ""
    elif row.verdict == INCONCLUSIVE:
        text += f", could detect ≥ {row.detectable:.3g}" if row.detectable == row.detectable else ""
    if getattr(row, "feasibility_capped", False):
        text += " (ahead, but feasible on fewer runs than the reference: never better)"
    return text
