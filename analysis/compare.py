"""Arms against the fixed-lambda arm: Pareto fronts and selections of the search, then the confirmation seeds.

Every comparison uses metrics that no arm's weights scale (final-epoch record fields); the weighted training
loss is never compared across arms. On the confirmation seeds each arm's winning configuration gets a mean,
a standard deviation and a 95% t-interval per metric, and a difference to the fixed-lambda arm paired by seed
with its t-interval and a paired t-test (``scipy.stats.ttest_rel``); a difference counts as detected when
p < ``ALPHA`` (equivalently, when the interval excludes 0).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .load import StudyTables
from .spec import Objective

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
MAIN_METRICS = [
    f"{name}_{vae}"
    for name in ("val_exact_match", "recon_coverage", "sampled_coverage", "prior_argmax_coverage", "triplet_r")
    for vae in ("A", "B")
]
NO_DIFFERENCE = "no difference detected"
NOT_COMPARED = "not compared (no seed with a finished run in both arms)"


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


def compared_metrics(tables: StudyTables) -> list[Objective]:
    """The spec's objectives and selection metric, then the main metrics (higher is better) not among them."""
    tracked = tables.spec.tracked_objectives()
    names = {o.metric for o in tracked}
    return tracked + [Objective(m, "max") for m in MAIN_METRICS if m not in names]


def pareto_mask(values: pd.DataFrame, objectives: list[Objective]) -> pd.Series:
    """True for the rows no other row dominates (at least as good in every objective, better in one)."""
    cost = np.column_stack([values[f"final_{o.metric}"].to_numpy(float) * o.sign() for o in objectives])
    front = np.zeros(len(cost), dtype=bool)
    for i, point in enumerate(cost):
        if np.isnan(point).any():
            continue
        others = cost[~np.isnan(cost).any(axis=1)]
        dominated = ((others <= point).all(axis=1) & (others < point).any(axis=1)).any()
        front[i] = not dominated
    return pd.Series(front, index=values.index)


def _final(tables: StudyTables, column: str) -> pd.Series:
    return tables.trials.get(column, pd.Series(math.nan, index=tables.trials.index)).astype(float)


def search_table(tables: StudyTables) -> pd.DataFrame:
    """Every search trial with its final objectives, feasibility, Pareto membership and the selected one.

    ``pareto``: on the front of the arm's usable trials; ``pareto_feasible``: on the front of its feasible
    trials; ``selected``: the trial the spec's selection rule picks, as the study does: the best selection
    metric among feasible trials that ran every epoch, else (none feasible) among all that ran every epoch.
    """
    spec, trials = tables.spec, tables.trials
    objectives = spec.tracked_objectives()
    search = trials[trials["phase"] == "search"].copy()
    for o in objectives:
        search[f"final_{o.metric}"] = _final(tables, f"final_{o.metric}")
    search["pareto"] = False
    search["pareto_feasible"] = False
    search["selected"] = False
    for arm, group in search.groupby("arm", sort=False):
        usable = group[group["usable"]]
        search.loc[usable.index, "pareto"] = pareto_mask(usable, spec.objectives)
        feasible = group[group["feasible"]]
        search.loc[feasible.index, "pareto_feasible"] = pareto_mask(feasible, spec.objectives)
        column = f"final_{spec.selection.metric}"
        full = usable[usable["final_epoch"] >= spec.epochs]
        pool = full[full["feasible"]] if full["feasible"].any() else full
        ranked = pool.dropna(subset=[column]).sort_values(
            [column, "trial_id"], ascending=[spec.selection.mode == "min", True], kind="stable"
        )
        if not ranked.empty:
            search.loc[ranked.index[0], "selected"] = True
    keep = ["arm", "trial_id", "status", "reason", "params", *(f"final_{o.metric}" for o in objectives)]
    return search[[*keep, "feasible", "pareto", "pareto_feasible", "selected"]].reset_index(drop=True)


def confirmation_winner(tables: StudyTables, arm: str) -> str | None:
    """The search trial whose confirmation runs have the best mean selection metric (None: no usable run)."""
    runs = _confirm_runs(tables, arm)
    column = f"final_{tables.spec.selection.metric}"
    if runs.empty or column not in runs:
        return None
    means = runs.assign(source_trial=_source(runs)).groupby("source_trial")[column].mean().dropna()
    if means.empty:
        return None
    return str(means.idxmin() if tables.spec.selection.mode == "min" else means.idxmax())


def _source(runs: pd.DataFrame) -> pd.Series:
    """The search trial each confirmation run repeats (runs without one form a single group)."""
    return runs["source_trial"].map(lambda v: "?" if v is None or v != v else str(v))


def _confirm_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    trials = tables.trials
    return trials[(trials["phase"] == "confirm") & (trials["arm"] == arm) & trials["usable"]]


def winner_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    """The usable confirmation runs of the arm's winning configuration, one row per seed."""
    source = confirmation_winner(tables, arm)
    runs = _confirm_runs(tables, arm)
    return runs[_source(runs) == source].sort_values("seed")


def confirm_summary(tables: StudyTables) -> pd.DataFrame:
    """Per arm and metric on the confirmation seeds of the arm's winner: n, mean, std, 95% t-interval."""
    rows = []
    for arm in tables.arms():
        runs = winner_runs(tables, arm)
        for o in compared_metrics(tables):
            column = f"final_{o.metric}"
            values = runs[column].astype(float) if column in runs else []
            rows.append({"arm": arm, "metric": o.metric, "mode": o.mode, **t_interval(values),
                         "feasible_runs": int(runs["feasible"].sum()) if len(runs) else 0})
    return pd.DataFrame(rows)


def paired_difference(a: np.ndarray, b: np.ndarray, mode: str) -> dict[str, float | str]:
    """a - b paired: t-interval of the differences, paired t-test, verdict for a (better/worse/none)."""
    diff = t_interval(a - b)
    p = math.nan
    if len(a) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero variance of the differences: p is NaN
            p = float(stats.ttest_rel(a, b).pvalue)
    verdict = NO_DIFFERENCE if len(a) else NOT_COMPARED
    if p < ALPHA:
        verdict = "better" if (diff["mean"] < 0) == (mode == "min") else "worse"
    return {"n_pairs": diff["n"], "mean_diff": diff["mean"], "ci_low": diff["ci_low"],
            "ci_high": diff["ci_high"], "p_value": p, "verdict": verdict}


def paired_vs_fixed(tables: StudyTables) -> pd.DataFrame:
    """Every other arm minus the fixed-lambda arm, paired by confirmation seed, per compared metric."""
    fixed = tables.fixed_arm()
    if fixed is None:
        return pd.DataFrame(columns=["arm", "metric", "mode", "n_pairs", "mean_diff", "p_value", "verdict"])
    reference = winner_runs(tables, fixed).set_index("seed")
    rows = []
    for arm in tables.arms():
        if arm == fixed:
            continue
        runs = winner_runs(tables, arm).set_index("seed")
        seeds = runs.index.intersection(reference.index)
        for o in compared_metrics(tables):
            column = f"final_{o.metric}"
            if column not in runs or column not in reference:
                continue
            pair = pd.DataFrame({"a": runs.loc[seeds, column], "b": reference.loc[seeds, column]}).dropna()
            rows.append({"arm": arm, "reference": fixed, "metric": o.metric, "mode": o.mode,
                         **paired_difference(pair["a"].to_numpy(float), pair["b"].to_numpy(float), o.mode)})
    return pd.DataFrame(rows)


def epochs_to_target(
    tables: StudyTables, metrics: tuple[str, ...] = ("recon_coverage_A", "recon_coverage_B"), target: float = 0.99
) -> pd.DataFrame:
    """Per arm and metric: the first epoch each confirmation run of the winner reaches ``target``.

    A run that never reaches it counts in ``runs`` but not in ``reached``; the mean and median are over the
    runs that did.
    """
    rows = []
    epochs = tables.epochs
    for arm in tables.arms():
        ids = set(winner_runs(tables, arm)["trial_id"])
        runs = epochs[(epochs["phase"] == "confirm") & (epochs["arm"] == arm) & epochs["trial_id"].isin(ids)]
        for metric in metrics:
            firsts = []
            if metric in runs:
                hit = runs[runs[metric].astype(float) >= target]
                firsts = hit.groupby("trial_id")["epoch"].min().to_list()
            rows.append({"arm": arm, "metric": metric, "target": target, "runs": len(ids), "reached": len(firsts),
                         "mean_epochs": float(np.mean(firsts)) if firsts else math.nan,
                         "median_epochs": float(np.median(firsts)) if firsts else math.nan})
    return pd.DataFrame(rows)


def winner(tables: StudyTables, paired: pd.DataFrame) -> tuple[str | None, str]:
    """The arm that beats fixed lambda on the selection metric by the largest detected margin, and a sentence.

    Returns ``(None, sentence)`` when no arm is detectably better (paired t-test, p < ALPHA). An arm whose
    confirmation runs do not all satisfy the spec's constraints cannot win: a better objective bought by giving
    up reconstruction (a collapsed or over-regularised controller) is not an answer.
    """
    selection = tables.spec.selection
    fixed = tables.fixed_arm()
    if fixed is None:
        return None, "No fixed-λ arm in this study: no winner against fixed λ can be named."
    rows = paired[(paired["metric"] == selection.metric)] if not paired.empty else paired
    better = rows[rows["verdict"] == "better"] if not rows.empty else rows
    infeasible = sorted({arm for arm in better["arm"] if not _all_feasible(tables, arm)}) if not better.empty else []
    if infeasible:
        better = better[~better["arm"].isin(infeasible)]
    test = f"paired t-test over the confirmation seeds, detected when p < {ALPHA:g}"
    excluded = (
        f" Better on {selection.metric} but not a winner, since some of their confirmation runs miss the constraints: "
        + ", ".join(f"`{arm}` ({_feasible_share(tables, arm)} feasible)" for arm in infeasible) + "."
        if infeasible else ""
    )
    if better.empty:
        return None, (f"No winner detected: no arm that meets the constraints beats the fixed-λ arm `{fixed}` on "
                      f"{selection.metric} ({selection.mode}) ({test}).{excluded}")
    best = better.loc[(better["mean_diff"] * -selection.sign()).idxmax()]
    return str(best["arm"]), (
        f"Winner: `{best['arm']}` beats the fixed-λ arm `{fixed}` on {selection.metric} by "
        f"{best['mean_diff']:+.4g} (95% CI {best['ci_low']:+.4g} to {best['ci_high']:+.4g}, "
        f"p = {best['p_value']:.3g}, n = {best['n_pairs']}; {test}); feasible confirmation runs: "
        f"{_feasible_share(tables, best['arm'])} vs {_feasible_share(tables, fixed)}.{excluded}"
    )


def _all_feasible(tables: StudyTables, arm: str) -> bool:
    runs = winner_runs(tables, arm)
    return len(runs) > 0 and bool(runs["feasible"].astype(bool).all())


def _feasible_share(tables: StudyTables, arm: str) -> str:
    runs = winner_runs(tables, arm)
    return f"{int(runs['feasible'].sum())}/{len(runs)}"
