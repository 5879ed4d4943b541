"""Arms against a reference arm: the search's Pareto fronts and selections, then the confirmation seeds.

Every comparison uses metrics that no arm's weights scale; the weighted training loss is never compared across
arms. Each arm is represented on the confirmation seeds by its *confirmed configuration*: among the search
trials it confirmed, the one with the most feasible confirmation seeds, then the fewest failed ones (diverged,
errored or missing), then the best mean selection metric (:func:`source_ranking`). Every spec seed counts: a
seed whose run diverged, failed or is missing is an infeasible seed, and an arm wins only when every seed of
its confirmed configuration is feasible.

Comparisons are paired by seed and made at every budget of the anytime comparison (``confirm.budgets``) on the
compared metrics, on the area under the selection metric's curve (its mean over the epochs so far) and on the
epochs to reach val exact match >= 0.99 on both VAEs (censored at the budget); the statistics and verdicts are
``analysis.stats``'. A family for Holm's correction is every arm against the reference on one metric at one
budget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.spec.ranking import ConfirmedRun, rank_sources
from study.spec.schema import DERIVED_METRICS

from .load import StudyTables
from study.spec import Objective
from .stats import BETTER, WORSE, decide, paired_test, t_interval

MAIN_METRICS = [
    f"{name}_{vae}"
    for name in ("val_exact_match", "recon_coverage", "sampled_coverage", "prior_argmax_coverage", "triplet_r")
    for vae in ("A", "B")
]
EXACT_TARGET = 0.99
EPOCHS_TO_EXACT = DERIVED_METRICS[0]  # first epoch with val exact match >= EXACT_TARGET on both VAEs
ABANDONED = "abandoned"  # the reason of a trial replaced after a killed driver: not a run of its seed
FAILED = "failed"


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
    trials; ``selected``: the trial the spec's selection rule picks, as the study does: the best selection
    metric among feasible trials that ran every epoch, else (none feasible) among all that ran every epoch;
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
        column = f"final_{spec.selection.metric}"
        full = usable[usable["final_epoch"] >= spec.epochs]
        pool = full[full["feasible"]] if full["feasible"].any() else full
        ranked = pool.dropna(subset=[column]).sort_values(
            [column, "trial_id"], ascending=[spec.selection.mode == "min", True], kind="stable"
        )
        if not ranked.empty:
            search.loc[ranked.index[0], "selected"] = True
    keep = ["arm", "trial_id", "status", "reason", "sampling", "params", *(f"final_{o.metric}" for o in objectives)]
    return search[[*keep, "feasible", "pareto", "pareto_feasible", "selected"]].reset_index(drop=True)


# --- the runs that represent an arm on the confirmation seeds ---------------------------------------------------
def _replaced(trials: pd.DataFrame) -> pd.Series:
    reason = trials["reason"].fillna("").astype(str)
    return (trials["status"] == "error") & reason.str.startswith(ABANDONED)


def _source(runs: pd.DataFrame) -> pd.Series:
    """The search trial each confirmation run repeats (runs without one form a single group)."""
    return runs["source_trial"].map(lambda v: "?" if v is None or v != v else str(v))


def confirm_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    """Every confirmation run of the arm (any status) except trials replaced after a killed driver."""
    trials = tables.trials
    return trials[(trials["phase"] == "confirm") & (trials["arm"] == arm) & ~_replaced(trials)]


def source_ranking(tables: StudyTables, arm: str) -> pd.DataFrame:
    """Per confirmed search trial of the arm: seeds feasible, seeds failed (diverged, errored or missing) and the
    mean selection metric over its finished runs, best first (``study.objectives.rank_sources``: feasible seeds,
    then fewest failed, then mean)."""
    runs = confirm_runs(tables, arm)
    column = f"final_{tables.spec.selection.metric}"
    confirmed = [
        ConfirmedRun(source, int(r["seed"]), bool(r["usable"]), bool(r["feasible"]),
                     float(r[column]) if column in r and r["usable"] and r[column] == r[column] else math.nan)
        for source, (_, r) in zip(_source(runs), runs.iterrows())
    ]
    ranked = rank_sources(confirmed, tables.spec.confirm.seeds, tables.spec.selection.mode)
    table = pd.DataFrame(ranked, columns=["source", "feasible", "failed", "mean"])
    return table.rename(columns={"source": "source_trial"})


def confirmation_winner(tables: StudyTables, arm: str) -> str | None:
    """The arm's confirmed configuration (its source search trial), or None when it has no confirmation run."""
    ranking = source_ranking(tables, arm)
    return None if ranking.empty else str(ranking["source_trial"].iloc[0])


def derived_runs(tables: StudyTables, arm: str) -> pd.DataFrame | None:
    """The runs of an arm made from another arm's confirmed runs (distilled baselines), or None for other arms.

    Such a run's ``source_arm`` names its parent arm and ``source_trial`` the parent's run it was made from; only
    the runs made from the parent's confirmed configuration represent the arm."""
    trials = tables.trials
    mine = trials[(trials["arm"] == arm) & ~_replaced(trials)]
    if "source_arm" not in mine or mine.empty or mine["source_arm"].isna().all():
        return None
    parent = str(mine["source_arm"].dropna().iloc[0])
    return mine[mine["source_trial"].isin(set(winner_runs(tables, parent)["trial_id"]))]


def winner_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    """The runs that represent the arm on the confirmation seeds (any status), one per seed, by seed: the
    confirmation runs of its confirmed configuration, or for a derived arm the runs made from them."""
    derived = derived_runs(tables, arm)
    if derived is not None:
        return derived.sort_values("seed")
    source = confirmation_winner(tables, arm)
    runs = confirm_runs(tables, arm)
    return runs[_source(runs) == source].sort_values("seed")


def feasible_share(tables: StudyTables, arm: str) -> tuple[int, int]:
    """(feasible seeds, spec seeds) of the arm's representing runs: a seed without a feasible run is infeasible."""
    runs = winner_runs(tables, arm)
    seeds = tables.spec.confirm.seeds
    return int(runs.loc[runs["feasible"].astype(bool) & runs["seed"].isin(seeds), "seed"].nunique()), len(seeds)


def all_feasible(tables: StudyTables, arm: str) -> bool:
    feasible, seeds = feasible_share(tables, arm)
    return feasible == seeds


def confirm_summary(tables: StudyTables) -> pd.DataFrame:
    """Per arm and metric on the arm's representing runs: n finished, mean, std, 95% t-interval, and the
    feasible and failed seeds out of the spec's seeds."""
    rows = []
    for arm in tables.arms():
        runs = winner_runs(tables, arm)
        usable = runs[runs["usable"]]
        feasible, seeds = feasible_share(tables, arm)
        for o in compared_metrics(tables):
            column = f"final_{o.metric}"
            values = usable[column].astype(float) if column in usable else []
            rows.append({"arm": arm, "metric": o.metric, "mode": o.mode, **t_interval(values),
                         "feasible_seeds": feasible, "failed_seeds": seeds - int(usable["seed"].nunique()),
                         "seeds": seeds})
    return pd.DataFrame(rows)


# --- the anytime comparison ---------------------------------------------------------------------------------------
def run_values(tables: StudyTables, arm: str, epoch: int) -> pd.DataFrame:
    """Per seed of the arm's finished-to-``epoch`` representing runs: each compared metric at ``epoch``, the
    selection metric's mean over epochs 1..``epoch`` and the epochs to exact match (``epoch`` + 1 when not
    reached by then: censored), with a ``censored`` flag."""
    runs = winner_runs(tables, arm)
    ids = dict(zip(runs["trial_id"], runs["seed"]))
    epochs = tables.epochs
    mine = epochs[(epochs["arm"] == arm) & epochs["trial_id"].isin(ids) & (epochs["epoch"] <= epoch)]
    mine = mine[mine["status"] == "ok"] if "status" in mine else mine
    selection = tables.spec.selection.metric
    rows = []
    for trial_id, records in mine.groupby("trial_id"):
        records = records.sort_values("epoch")
        if records["epoch"].max() != epoch:
            continue  # diverged or unfinished before this budget
        last = records.iloc[-1]
        row = {"seed": ids[trial_id], **{o.metric: float(last[o.metric]) for o in compared_metrics(tables)
                                          if o.metric in last and last[o.metric] == last[o.metric]}}
        if selection in records:
            row[auc_metric(tables).metric] = float(records[selection].astype(float).mean())
        reached = records[(records.get("val_exact_match_A", 0) >= EXACT_TARGET)
                          & (records.get("val_exact_match_B", 0) >= EXACT_TARGET)]
        row[EPOCHS_TO_EXACT] = float(reached["epoch"].min()) if len(reached) else float(epoch + 1)
        row["censored"] = reached.empty
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed") if rows else pd.DataFrame(index=pd.Index([], name="seed"))


def anytime_metrics(tables: StudyTables) -> list[Objective]:
    return [*compared_metrics(tables), auc_metric(tables), Objective(metric=EPOCHS_TO_EXACT, mode="min")]


def margin(tables: StudyTables, metric: str) -> float | None:
    """The spec's equivalence margin of a metric (an area under a curve takes its metric's margin)."""
    margins = tables.spec.equivalence
    return margins.get(metric, margins.get(metric.removeprefix("auc_")))


def paired_table(tables: StudyTables, pairs: list[tuple[str, str]], family: list[str]) -> pd.DataFrame:
    """Each (arm, reference) pair compared at every budget on every anytime metric, paired by seed, with Holm's
    correction within each group of the ``family`` columns and a verdict (``analysis.stats``)."""
    rows = []
    for fraction, epoch in tables.spec.confirm.budget_epochs(tables.spec.epochs):
        values = {arm: run_values(tables, arm, epoch) for arm in {a for pair in pairs for a in pair}}
        for arm, reference in pairs:
            mine, theirs = values[arm], values[reference]
            seeds = mine.index.intersection(theirs.index)
            for o in anytime_metrics(tables):
                if o.metric not in mine or o.metric not in theirs:
                    continue
                pair = pd.DataFrame({"a": mine.loc[seeds, o.metric], "b": theirs.loc[seeds, o.metric]}).dropna()
                censored = (int(mine.loc[pair.index, "censored"].sum()), int(theirs.loc[pair.index, "censored"].sum())) \
                    if o.metric == EPOCHS_TO_EXACT else (0, 0)
                rows.append({"arm": arm, "reference": reference, "budget": fraction, "epoch": epoch,
                             "metric": o.metric, "mode": o.mode, "margin": margin(tables, o.metric),
                             **paired_test(pair["a"].to_numpy(), pair["b"].to_numpy(), margin(tables, o.metric)),
                             "censored_arm": censored[0], "censored_reference": censored[1]})
    columns = ["arm", "reference", "budget", "epoch", "metric", "mode", "margin", "n_pairs", "mean_diff", "ci_low",
               "ci_high", "p_value", "p_equivalent", "detectable", "censored_arm", "censored_reference"]
    return decide(pd.DataFrame(rows, columns=columns), family)


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


def epochs_to_target(tables: StudyTables, metrics: tuple[str, ...] = ("val_exact_match_A", "val_exact_match_B"),
                     target: float = 0.99) -> pd.DataFrame:
    """Per arm and metric: the first epoch each representing run reaches ``target``; a finished run that never
    does is censored at the run's length (counted as epochs + 1, so the mean and median are lower bounds when
    ``censored`` > 0). Runs that did not finish are left out (``runs`` counts those kept)."""
    rows = []
    epochs = tables.epochs
    for arm in tables.arms():
        runs = winner_runs(tables, arm)
        ids = set(runs.loc[runs["usable"], "trial_id"])
        mine = epochs[(epochs["arm"] == arm) & epochs["trial_id"].isin(ids)]
        for metric in metrics:  # (val exact match is evaluated every epoch; the full set may skip epochs)
            firsts, censored = [], 0
            for _, records in mine.groupby("trial_id"):
                hit = records[records[metric].astype(float) >= target] if metric in records else records.iloc[0:0]
                if hit.empty:
                    censored += 1
                    firsts.append(int(records["epoch"].max()) + 1)
                else:
                    firsts.append(int(hit["epoch"].min()))
            rows.append({"arm": arm, "metric": metric, "target": target, "runs": len(firsts),
                         "reached": len(firsts) - censored, "censored": censored,
                         "mean_epochs": float(np.mean(firsts)) if firsts else math.nan,
                         "median_epochs": float(np.median(firsts)) if firsts else math.nan})
    return pd.DataFrame(rows)


def quality_frontier(tables: StudyTables, target: float = EXACT_TARGET) -> pd.DataFrame:
    """Per arm, over its representing runs that finished every epoch: how many reconstruct on both VAEs (final
    val exact match >= ``target``), and among those the best and the mean [95% t-interval] of the selection
    metric, with the best run's seed. The quality a user can count on: a run that gave up reconstruction for a
    better selection metric is not on it."""
    metric = tables.spec.selection.metric
    column = f"final_{metric}"
    best_of = max if tables.spec.selection.mode == "max" else min
    rows = []
    for arm in tables.arms():
        runs = winner_runs(tables, arm)
        runs = runs[(runs["status"] == "ok") & runs["usable"].astype(bool)]
        exact = [f"final_val_exact_match_{v}" for v in ("A", "B")]
        good = runs[np.logical_and.reduce([runs[c].astype(float) >= target for c in exact])] if len(runs) and all(
            c in runs for c in exact) else runs.iloc[0:0]
        values = good[column].astype(float).tolist() if column in good else []
        best = best_of(values) if values else math.nan
        interval = t_interval(values)
        rows.append({"arm": arm, "metric": metric, "target": target, "runs": len(runs), "reconstructing": len(good),
                     "best": best, "best_seed": int(good.loc[good[column].astype(float) == best, "seed"].iloc[0])
                     if values else None, "mean": interval["mean"], "ci_low": interval["ci_low"],
                     "ci_high": interval["ci_high"]})
    return pd.DataFrame(rows)


def winner(tables: StudyTables, paired: pd.DataFrame) -> tuple[str | None, str]:
    """The arm that beats fixed lambda on the selection metric at the whole run by the largest margin, and a
    sentence; ``(None, sentence)`` when there is none.

    A contender must be ``better`` (Holm-corrected paired t-test), feasible on every spec seed (a better
    objective bought by giving up reconstruction is not an answer, and a diverged seed is an infeasible one) and
    not ``worse`` on any other objective."""
    selection = tables.spec.selection
    fixed = tables.fixed_arm()
    if fixed is None:
        return None, "No fixed-λ arm in this study: no winner against fixed λ can be named."
    final = full_budget(paired)
    rows = final[final["metric"] == selection.metric] if not final.empty else final
    better = rows[rows["verdict"] == BETTER] if not rows.empty else rows
    excluded = []
    for arm in list(better["arm"]) if not better.empty else []:
        feasible, seeds = feasible_share(tables, arm)
        worse = final[(final["arm"] == arm) & (final["verdict"] == WORSE)
                      & final["metric"].isin([o.metric for o in tables.spec.objectives])]
        if feasible < seeds:
            excluded.append(f"`{arm}` (feasible on {feasible}/{seeds} seeds)")
        elif not worse.empty:
            excluded.append(f"`{arm}` (worse on {', '.join(worse['metric'])})")
        else:
            continue
        better = better[better["arm"] != arm]
    test = "paired t-tests over the confirmation seeds, Holm-corrected across arms"
    note = (f" Better on {selection.metric} but not a winner: " + ", ".join(excluded) + ".") if excluded else ""
    fixed_share = "{}/{}".format(*feasible_share(tables, fixed))
    if better.empty:
        return None, (f"No winner: no arm that is feasible on every seed beats the fixed-λ arm `{fixed}` on "
                      f"{selection.metric} ({selection.mode}) ({test}).{note}")
    best = better.loc[(better["mean_diff"] * -selection.sign()).idxmax()]
    return str(best["arm"]), (
        f"Winner: `{best['arm']}` beats the fixed-λ arm `{fixed}` on {selection.metric} by "
        f"{best['mean_diff']:+.4g} (95% CI {best['ci_low']:+.4g} to {best['ci_high']:+.4g}, "
        f"Holm p = {best['p_holm']:.3g}, n = {best['n_pairs']}; {test}); feasible seeds "
        "{}/{}".format(*feasible_share(tables, best["arm"])) + f" vs {fixed_share}.{note}"
    )
