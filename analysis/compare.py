"""Arms against a reference arm: the search's Pareto fronts and selections, then the confirmation seeds.

Every comparison uses metrics that no arm's weights scale; the weighted training loss is never compared across
arms. Each arm is represented on the confirmation seeds by its representing runs (``analysis.runs``: each search
replicate's confirmed configuration on every seed). Every spec seed counts: a run that diverged, failed or is
missing is an infeasible one, and an arm wins only when every run is feasible.

Comparisons are paired by seed — each arm's value on a seed is its mean over its replicates — and made at every
budget of the anytime comparison (``confirm.budgets``) on the compared metrics, on the area under the selection
metric's curve (its mean over the epochs so far) and on the epochs to reach val exact match >= 0.99 on both VAEs
(censored at the budget); the statistics and verdicts are ``analysis.stats``'. With several replicates a
``better`` or ``worse`` verdict needs every replicate of the arm to differ from the reference in the same
direction, and each comparison carries P(A beats B) with its interval. A family for Holm's correction is every
arm against the reference on one metric at one budget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.spec import Objective
from study.spec.schema import DERIVED_METRICS

from .load import StudyTables
from .runs import feasible_share, winner_runs
from .stats import BETTER, INCONCLUSIVE, WORSE, decide, p_better, paired_test, seeds_needed, t_interval

MAIN_METRICS = [
    f"{name}_{vae}"
    for name in ("val_exact_match", "recon_coverage", "sampled_coverage", "prior_argmax_coverage", "triplet_r")
    for vae in ("A", "B")
]
EXACT_TARGET = 0.99
EPOCHS_TO_EXACT = DERIVED_METRICS[0]  # first epoch with val exact match >= EXACT_TARGET on both VAEs


def compared_metrics(tables: StudyTables) -> list[Objective]:
    """The spec's objectives and selection metric, then the main metrics (higher is better) not among them."""
    tracked = tables.spec.tracked_objectives()
    names = {o.metric for o in tracked}
    return tracked + [Objective(metric=m, mode="max") for m in MAIN_METRICS if m not in names]


def auc_metric(tables: StudyTables) -> Objective:
    """The area under the selection metric's curve (its mean over epochs), named ``auc_<metric>``."""
    return Objective(metric=f"auc_{tables.spec.selection.metric}", mode=tables.spec.selection.mode)


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
    trials; ``selected``: the trial the spec's selection rule picks in each replicate, as the study does: the best
    selection metric among feasible trials that ran every epoch, else (none feasible) among all that ran every
    epoch;
    ``sampling``: ``random`` (TPE's start-up) or ``model`` (TPE's model).
    """
    spec, trials = tables.spec, tables.trials
    objectives = spec.tracked_objectives()
    search = trials[trials["phase"] == "search"].copy()
    for o in objectives:
        search[f"final_{o.metric}"] = _final(tables, f"final_{o.metric}")
    search["pareto"] = False
    search["pareto_feasible"] = False
    search["selected"] = False
    if "sampling" not in search:
        search["sampling"] = None
    for arm, group in search.groupby("arm", sort=False):
        usable = group[group["usable"]]
        search.loc[usable.index, "pareto"] = pareto_mask(usable, spec.objectives)
        feasible = group[group["feasible"]]
        search.loc[feasible.index, "pareto_feasible"] = pareto_mask(feasible, spec.objectives)
    for _, group in search.groupby(["arm", "replicate"], sort=False):
        usable = group[group["usable"]]
        column = f"final_{spec.selection.metric}"
        full = usable[usable["final_epoch"] >= spec.epochs]
        pool = full[full["feasible"]] if full["feasible"].any() else full
        ranked = pool.dropna(subset=[column]).sort_values(
            [column, "trial_id"], ascending=[spec.selection.mode == "min", True], kind="stable"
        )
        if not ranked.empty:
            search.loc[ranked.index[0], "selected"] = True
    keep = ["arm", "replicate", "trial_id", "status", "reason", "sampling", "params",
            *(f"final_{o.metric}" for o in objectives)]
    return search[[*keep, "feasible", "pareto", "pareto_feasible", "selected"]].reset_index(drop=True)


def confirm_summary(tables: StudyTables) -> pd.DataFrame:
    """Per arm and metric on the arm's representing runs (every replicate and seed): n finished, mean, std, 95%
    t-interval, and the feasible and failed runs out of those expected (seeds x replicates)."""
    rows = []
    for arm in tables.arms():
        runs = winner_runs(tables, arm)
        usable = runs[runs["usable"]]
        feasible, expected = feasible_share(tables, arm)
        for o in compared_metrics(tables):
            column = f"final_{o.metric}"
            values = usable[column].astype(float) if column in usable else []
            rows.append({"arm": arm, "metric": o.metric, "mode": o.mode, **t_interval(values),
                         "feasible_runs": feasible,
                         "failed_runs": expected - len(usable[["replicate", "seed"]].drop_duplicates()),
                         "runs": expected})
    return pd.DataFrame(rows)


# --- the anytime comparison ---------------------------------------------------------------------------------------
def run_values(tables: StudyTables, runs: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """Per replicate and seed of the ``runs`` that finished ``epoch``: each compared metric at ``epoch``, the
    selection metric's mean over epochs 1..``epoch`` and the epochs to exact match (``epoch`` + 1 when not
    reached by then: censored), with a ``censored`` flag; indexed by (replicate, seed)."""
    ids = {t: (int(r), int(s)) for t, r, s in zip(runs["trial_id"], runs["replicate"], runs["seed"])}
    arms = set(runs["arm"])
    epochs = tables.epochs
    mine = epochs[epochs["arm"].isin(arms) & epochs["trial_id"].isin(ids) & (epochs["epoch"] <= epoch)]
    mine = mine[mine["status"] == "ok"] if "status" in mine else mine
    selection = tables.spec.selection.metric
    rows = []
    for trial_id, records in mine.groupby("trial_id"):
        records = records.sort_values("epoch")
        if records["epoch"].max() != epoch:
            continue  # diverged or unfinished before this budget
        last = records.iloc[-1]
        row = {"replicate": ids[trial_id][0], "seed": ids[trial_id][1],
               **{o.metric: float(last[o.metric]) for o in compared_metrics(tables)
                  if o.metric in last and last[o.metric] == last[o.metric]}}
        if selection in records:
            row[auc_metric(tables).metric] = float(records[selection].astype(float).mean())
        reached = records[(records.get("val_exact_match_A", 0) >= EXACT_TARGET)
                          & (records.get("val_exact_match_B", 0) >= EXACT_TARGET)]
        row[EPOCHS_TO_EXACT] = float(reached["epoch"].min()) if len(reached) else float(epoch + 1)
        row["censored"] = reached.empty
        rows.append(row)
    index = ["replicate", "seed"]
    return pd.DataFrame(rows).set_index(index) if rows else pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=index))


def anytime_metrics(tables: StudyTables) -> list[Objective]:
    return [*compared_metrics(tables), auc_metric(tables), Objective(metric=EPOCHS_TO_EXACT, mode="min")]


def margin(tables: StudyTables, metric: str) -> float | None:
    """The spec's equivalence margin of a metric (an area under a curve takes its metric's margin)."""
    margins = tables.spec.equivalence
    return margins.get(metric, margins.get(metric.removeprefix("auc_")))


def _by_seed(values: pd.DataFrame, metric: str) -> dict[int, list[float]]:
    """seed -> the metric's values of every replicate on it."""
    column = values[metric].dropna()
    return {int(seed): group.tolist() for seed, group in column.groupby(level="seed")}


def _compare(mine: pd.DataFrame, theirs: pd.DataFrame, o: Objective, margin_: float | None) -> dict:
    """One paired comparison: the per-seed means over replicates tested (``analysis.stats.paired_test``), the
    seeds the margin needs, P(A beats B), and whether every replicate of the arm differs in one direction."""
    a, b = _by_seed(mine, o.metric), _by_seed(theirs, o.metric)
    seeds = sorted(set(a) & set(b))
    a_mean = np.array([np.mean(a[s]) for s in seeds])
    b_mean = np.array([np.mean(b[s]) for s in seeds])
    row = paired_test(a_mean, b_mean, margin_)
    spread = float(np.std(a_mean - b_mean, ddof=1)) if len(seeds) > 1 else math.nan
    per_replicate = []
    for replicate in sorted({r for r, _ in mine.index}):
        diffs = [mine.loc[(replicate, s), o.metric] - np.mean(b[s]) for s in seeds if (replicate, s) in mine.index]
        diffs = [d for d in diffs if d == d]
        if diffs:
            per_replicate.append(float(np.mean(diffs)))
    signs = {np.sign(d) for d in per_replicate}
    return {**row, "seeds_for_margin": seeds_needed(spread, margin_), "replicates": len(per_replicate),
            "replicates_agree": len(signs) == 1 and 0 not in signs, **p_better(a, b, o.mode)}


PAIRED_COLUMNS = ["arm", "reference", "budget", "epoch", "metric", "mode", "margin", "n_pairs", "mean_diff", "ci_low",
                  "ci_high", "p_value", "p_equivalent", "detectable", "seeds_for_margin", "replicates",
                  "replicates_agree", "p_better", "p_better_low", "p_better_high", "censored_arm",
                  "censored_reference"]


def paired_table(tables: StudyTables, pairs: list[tuple[str, str]], family: list[str],
                 runs: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Each (arm, reference) pair compared at every budget on every anytime metric, paired by seed, with Holm's
    correction within each group of the ``family`` columns and a verdict (``analysis.stats``); a ``better`` or
    ``worse`` whose replicates disagree in sign is ``inconclusive``. ``runs``: the runs that stand for a label
    (default: its representing runs, ``analysis.runs.winner_runs``)."""
    labels = {a for pair in pairs for a in pair}
    runs = {label: (runs or {}).get(label, None) for label in labels}
    runs = {label: frame if frame is not None else winner_runs(tables, label) for label, frame in runs.items()}
    rows = []
    for fraction, epoch in tables.spec.confirm.budget_epochs(tables.spec.epochs):
        values = {label: run_values(tables, runs[label], epoch) for label in labels}
        for arm, reference in pairs:
            mine, theirs = values[arm], values[reference]
            for o in anytime_metrics(tables):
                if o.metric not in mine or o.metric not in theirs:
                    continue
                censored = (int(mine["censored"].sum()), int(theirs["censored"].sum())) \
                    if o.metric == EPOCHS_TO_EXACT else (0, 0)
                rows.append({"arm": arm, "reference": reference, "budget": fraction, "epoch": epoch,
                             "metric": o.metric, "mode": o.mode, "margin": margin(tables, o.metric),
                             **_compare(mine, theirs, o, margin(tables, o.metric)),
                             "censored_arm": censored[0], "censored_reference": censored[1]})
    decided = decide(pd.DataFrame(rows, columns=PAIRED_COLUMNS), family)
    if not decided.empty:
        split = decided["verdict"].isin([BETTER, WORSE]) & ~decided["replicates_agree"].astype(bool)
        decided.loc[split, "verdict"] = INCONCLUSIVE
    return decided


def main_arms(tables: StudyTables) -> list[str]:
    """The spec's arms (derived arms such as distilled baselines are baselines, not contenders)."""
    return [arm for arm in tables.arms() if arm in tables.spec.arms]


def paired_vs_fixed(tables: StudyTables) -> pd.DataFrame:
    """Every other spec arm against the fixed-lambda reference arm, at every budget (one Holm family per metric
    and budget)."""
    fixed = tables.fixed_arm()
    arms = [a for a in main_arms(tables) if a != fixed] if fixed is not None else []
    return paired_table(tables, [(arm, fixed) for arm in arms], ["reference", "budget", "metric"])


def full_budget(paired: pd.DataFrame) -> pd.DataFrame:
    """The rows of a paired table at the whole run (budget 1)."""
    return paired[paired["budget"] == 1.0] if not paired.empty else paired


def winner(tables: StudyTables, paired: pd.DataFrame) -> tuple[str | None, str]:
    """The arm that beats fixed lambda on the selection metric at the whole run by the largest margin, and a
    sentence; ``(None, sentence)`` when there is none.

    The ranking rule decides, as at every stage of the study: a contender must be ``better`` on the selection
    metric (Holm-corrected paired t-test, every replicate agreeing) and feasible on every run (a better selection
    metric bought by giving up reconstruction is not an answer, and a diverged seed is an infeasible one). The
    other objectives do not decide; where the winner is worse on one, the sentence names the trade-off."""
    selection = tables.spec.selection
    fixed = tables.fixed_arm()
    if fixed is None:
        return None, "No fixed-λ arm in this study: no winner against fixed λ can be named."
    final = full_budget(paired)
    rows = final[final["metric"] == selection.metric] if not final.empty else final
    better = rows[rows["verdict"] == BETTER] if not rows.empty else rows
    excluded = []
    for arm in list(better["arm"]) if not better.empty else []:
        feasible, expected = feasible_share(tables, arm)
        if feasible < expected:
            excluded.append(f"`{arm}` (feasible on {feasible}/{expected} runs)")
            better = better[better["arm"] != arm]
    test = "paired t-tests over the confirmation seeds, Holm-corrected across arms"
    note = (f" Better on {selection.metric} but not a winner: " + ", ".join(excluded) + ".") if excluded else ""
    fixed_share = "{}/{}".format(*feasible_share(tables, fixed))
    if better.empty:
        return None, (f"No winner: no arm that is feasible on every run beats the fixed-λ arm `{fixed}` on "
                      f"{selection.metric} ({selection.mode}) ({test}).{note}")
    best = better.loc[(better["mean_diff"] * -selection.sign()).idxmax()]
    worse = final[(final["arm"] == best["arm"]) & (final["verdict"] == WORSE)
                  & final["metric"].isin([o.metric for o in tables.spec.objectives])]
    trade = (" Its trade-off: worse on " + ", ".join(f"{r.metric} ({r.mean_diff:+.4g})" for r in worse.itertuples())
             + ".") if not worse.empty else ""
    return str(best["arm"]), (
        f"Winner: `{best['arm']}` beats the fixed-λ arm `{fixed}` on {selection.metric} by "
        f"{best['mean_diff']:+.4g} (95% CI {best['ci_low']:+.4g} to {best['ci_high']:+.4g}, "
        f"Holm p = {best['p_holm']:.3g}, n = {best['n_pairs']}; {test}); feasible runs "
        "{}/{}".format(*feasible_share(tables, best["arm"])) + f" vs {fixed_share}.{trade}{note}"
    )
