"""The search as a random variable: how much of an arm's result is its search's own draw, and which arm is ahead at
equal tuning effort.

**Expected best of n** (Dodge et al., "Show Your Work", EMNLP 2019). Of an arm's N search trials (every
replicate), the expected best selection value among n drawn without replacement, n = 1 ... budget, computed
exactly from the order statistics of the finished trials, not by sampling. A trial counts with its final
selection value when it ran every epoch and met the constraints (the ranking rule: feasible first); any other
trial (stopped early, diverged, infeasible) can never be the pick. With the F qualifying values sorted
ascending, v_1 <= ... <= v_F, the best of a random n-subset is v_i with probability C(i - 1 + N - F, n - 1) /
C(N, n); the table gives the probability that some qualifying trial is among the n (``p_qualifying``) and the
expected best given that one is (``expected``), against n and against the trial-epochs n trials cost on average
(early stopping makes a trial cheaper). The band: a percentile bootstrap over the N trials (resampled with
replacement, seeded).

**Replicate spread.** With ``search_replicates`` > 1, per arm: each replicate's confirmed configuration's mean
selection metric over the confirmation seeds, the spread of those means, and the share of the variance of the
confirmed runs that lies between replicates (the search's own) rather than between seeds.

Example::

    expected_best(tables).query("arm == 'fixed'")[["n", "trial_epochs", "expected", "low", "high"]]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import gammaln

from study.protocol.plan import SEARCH

from .load import StudyTables
from .runs import winner_runs

RESAMPLES = 500
EXPECTED_COLUMNS = ["arm", "n", "trial_epochs", "expected", "p_qualifying", "low", "high", "trials", "qualifying"]


def _log_comb(a: np.ndarray | int, b: int) -> np.ndarray:
    return gammaln(np.asarray(a) + 1.0) - gammaln(b + 1.0) - gammaln(np.asarray(a) - b + 1.0)


def expected_best_of(values: list[float], total: int, n: int) -> tuple[float, float]:
    """(expected best given one qualifies, probability that one does) of ``n`` draws without replacement from
    ``total`` trials of which ``values`` (larger is better) qualify."""
    qualifying = np.sort(np.asarray(values, dtype=float))
    f = len(qualifying)
    if n > total or f == 0:
        return math.nan, 0.0
    log_subsets = _log_comb(total, n)
    p_none = float(np.exp(_log_comb(total - f, n) - log_subsets)) if total - f >= n else 0.0
    rank = np.arange(f) + total - f  # C(i - 1 + N - F, n - 1) for the i-th smallest, i = 1 ... F
    weights = np.where(rank >= n - 1, np.exp(_log_comb(np.maximum(rank, n - 1), n - 1) - log_subsets), 0.0)
    return float(weights @ qualifying / (1.0 - p_none)), 1.0 - p_none


def expected_best(tables: StudyTables, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per Optuna or PBT arm and n = 1 ... budget: the expected best selection value among n search trials (in
    the metric's own direction), its bootstrap band and the mean trial-epochs of n trials."""
    spec, trials = tables.spec, tables.trials
    sign = -spec.selection.sign()  # larger is better
    column = f"final_{spec.selection.metric}"
    rows = []
    for arm in spec.arms:
        search = trials[(trials["phase"] == SEARCH) & (trials["arm"] == arm)]
        if search.empty:
            continue
        ok = search["feasible"].astype(bool) & (search["final_epoch"] >= spec.epochs) & (search["status"] == "ok")
        scores = np.where(ok, search[column].astype(float) * sign if column in search else np.nan, np.nan)
        cost = float(search["epochs_done"].astype(float).mean())
        rng = np.random.default_rng(seed)
        samples = [rng.choice(scores, size=len(scores), replace=True) for _ in range(resamples)]
        for n in range(1, min(spec.arms[arm].budget, len(scores)) + 1):
            expected, p = expected_best_of([v for v in scores if v == v], len(scores), n)
            boot = [expected_best_of([v for v in s if v == v], len(s), n)[0] for s in samples]
            boot = [b for b in boot if b == b]
            low, high = np.percentile(boot, [2.5, 97.5]) if boot else (math.nan, math.nan)
            rows.append({"arm": arm, "n": n, "trial_epochs": n * cost, "expected": sign * expected,
                         "p_qualifying": p, "low": sign * (low if sign > 0 else high),
                         "high": sign * (high if sign > 0 else low), "trials": len(scores),
                         "qualifying": int(np.isfinite(scores).sum())})
    return pd.DataFrame(rows, columns=EXPECTED_COLUMNS)


def replicate_spread(tables: StudyTables) -> pd.DataFrame:
    """Per arm and replicate: the confirmed configuration, its mean selection metric over its seeds; per arm, the
    spread of those means and the share of the confirmed runs' variance between replicates (``search_share``).
    Empty with one replicate."""
    if tables.spec.search_replicates < 2:
        return pd.DataFrame(columns=["arm", "replicate", "source_trial", "mean", "n"])
    column = f"final_{tables.spec.selection.metric}"
    rows = []
    for arm in tables.spec.arms:
        runs = winner_runs(tables, arm)
        runs = runs[runs["usable"].astype(bool)]
        if runs.empty or column not in runs:
            continue
        groups = runs.groupby("replicate")[column]
        means, within = groups.mean().astype(float), groups.var(ddof=1).astype(float)
        between = float(means.var(ddof=1)) if len(means) > 1 else math.nan
        share = between / (between + float(within.mean())) if between == between and within.notna().any() else math.nan
        for replicate, mean in means.items():
            rows.append({"arm": arm, "replicate": int(replicate),
                         "source_trial": runs.loc[runs["replicate"] == replicate, "source_trial"].iloc[0],
                         "mean": float(mean), "n": int(groups.size()[replicate]),
                         "spread": float(means.max() - means.min()), "sd_between": math.sqrt(between)
                         if between == between else math.nan, "sd_within": math.sqrt(float(within.mean()))
                         if within.notna().any() else math.nan, "search_share": share})
    return pd.DataFrame(rows)
