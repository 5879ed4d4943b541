"""Arms against a reference arm: the search's Pareto fronts and selections, then the confirmation seeds.

Every comparison uses metrics that no arm's weights scale; the weighted training loss is never compared across
arms. Each arm is represented on the confirmation seeds by its representing runs (``analysis.runs``: each search
replicate's confirmed configuration on every seed). Every spec seed counts: a run that diverged, failed or is
missing is an infeasible one, and an arm wins only when every run is feasible.

Comparisons are made at every budget of the anytime comparison (``confirm.budgets``) on the compared metrics, on
the area under the selection metric's curve (its mean over the epochs so far) and on the epochs to reach val
exact match >= 0.99 on both VAEs (censored at the budget). Each is a comparison of whole pipelines
(``analysis.pipeline``): runs paired by seed, nested in their search replicates, a run that missed the
constraints ranked below every feasible one, the difference over the pairs in which both runs are feasible, a
bootstrap over replicates then seeds, a t-test over the replicates, and P(A beats B); with one replicate, the
seed-level paired t-test, flagged. The verdicts are ``analysis.stats``'; a family for Holm's correction is every
arm against the reference on one metric at one budget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.protocol import Objective
from study.protocol.plan import CONFIRM, FRONT
from study.protocol.ranking import ranking_score
from study.protocol.reference import search_seed
from study.protocol.schema import DERIVED_METRICS

from .load import StudyTables
from .pipeline import Grid, compare_grids
from .runs import feasible_share, replicates, winner_runs
from .stats import BETTER, INCONCLUSIVE, WORSE, decide, describe, t_interval

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


def _rank(spec, row: pd.Series) -> float:
    """The study's ranking score of a trial from its row (its final record's fields, its status)."""
    record = {k[len("final_"):]: v for k, v in row.items() if isinstance(k, str) and k.startswith("final_")}
    return ranking_score(spec, {**record, "status": row["status"]})


def _order(pool: pd.DataFrame, index) -> int:
    """Ties go to the earlier trial: search trials in name order, then front points (as the study ranks them)."""
    return list(pool.index).index(index)


def front_candidates(tables: StudyTables) -> pd.DataFrame:
    """The front's runs on its arm's search seed that ran every epoch: candidates of that arm's pick."""
    spec, trials = tables.spec, tables.trials
    if spec.front is None or "phase" not in trials:
        return trials.iloc[:0]
    runs = trials[(trials["phase"] == FRONT) & (trials["status"] == "ok") & (trials["final_epoch"] >= spec.epochs)]
    return runs[runs["seed"] == search_seed(spec, spec.front.arm)]


def infeasible_pick_lines(tables: StudyTables) -> list[str]:
    """One line per arm and replicate whose search found no feasible configuration (its confirmation runs'
    ``source_feasible`` is false): it confirmed the trial nearest the constraints."""
    trials = tables.trials
    if "source_feasible" not in trials:
        return []
    runs = trials[(trials["phase"] == CONFIRM) & (trials["source_feasible"] == False)]  # noqa: E712 - NaN is not False
    return [f"- `{arm}` replicate {int(rep)}: its search found no feasible configuration; it confirmed "
            f"`{group['source_trial'].iloc[0]}`, the one nearest the constraints."
            for (arm, rep), group in runs.groupby(["arm", "replicate"], sort=False)]


def search_table(tables: StudyTables) -> pd.DataFrame:
    """Every search trial with its final objectives, feasibility, Pareto membership and the selected one.

    ``pareto``: on the front of the arm's usable trials; ``pareto_feasible``: on the front of its feasible
    trials; ``selected``: the trial the spec's ranking rule picks in each replicate, as the study does
    (``study.protocol.ranking.ranking_score`` over the trials that ran every epoch: feasible first by the selection
    metric, else the one nearest the constraints; the front's arm ranks its front runs on the search seed too, and
    a replicate that a front point won selects no search trial);
    ``sampling``: ``defaults`` (the arm's own defaults, the first trial of each replicate), ``random`` (TPE's
    start-up) or ``model`` (TPE's model).
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
    grid = front_candidates(tables)
    for (arm, _), group in search.groupby(["arm", "replicate"], sort=False):
        full = group[group["usable"] & (group["final_epoch"] >= spec.epochs) & (group["status"] == "ok")]
        pool = pd.concat([full, grid[grid["arm"] == arm]]) if not grid.empty else full
        if pool.empty:
            continue
        best = max(pool.index, key=lambda i: (_rank(spec, pool.loc[i]), -_order(pool, i)))
        if best in full.index:  # else a front point won the replicate (front.csv's ``picked_in``)
            search.loc[best, "selected"] = True
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


def _grid(values: pd.DataFrame, runs: pd.DataFrame, replicates: list[int], seeds: list[int], metric: str) -> Grid:
    """A label's runs on the comparison's replicates x seeds: the metric at the budget and the run's feasibility
    (the trial's ``feasible`` flag, as ``analysis.load`` judged it at the end of the run; a run that is missing or
    did not finish the budget's epoch is not feasible)."""
    ok_flags = runs["feasible"].fillna(False).astype(bool) if len(runs) else []
    feasible = {(int(r), int(s)) for r, s, ok in zip(runs["replicate"], runs["seed"], ok_flags) if ok}
    measured = dict(zip(values.index, values[metric])) if metric in values else {}
    shape = (len(replicates), len(seeds))
    grid, ok = np.full(shape, math.nan), np.zeros(shape, dtype=bool)
    for i, replicate in enumerate(replicates):
        for k, seed in enumerate(seeds):
            if (replicate, seed) in measured:  # finished the budget's epoch
                grid[i, k] = float(measured[(replicate, seed)])
                ok[i, k] = (replicate, seed) in feasible
    return Grid(grid, ok)


def _replicates(runs: pd.DataFrame, expected: int | None) -> list[int]:
    """The replicates a label stands on: those its runs have, and as many more as it should have (``expected``;
    a replicate without a run is a replicate of missing, so infeasible, runs)."""
    present = sorted({int(r) for r in runs["replicate"]})
    missing = [r for r in range(expected or 0) if r not in present]
    return present + missing[:max(0, (expected or 0) - len(present))]


def _matched(runs: dict[str, pd.DataFrame], arm: str, reference: str) -> bool:
    """Whether one label's runs were made from the other's (a distilled baseline or an ablation option: its
    replicate i from replicate i's runs), so that replicates pair one to one."""
    def made_from(label: str, parent: str) -> bool:
        frame = runs[label]
        return "source_arm" in frame and bool((frame["source_arm"] == parent).any())
    return made_from(arm, reference) or made_from(reference, arm)


def _compare(mine: Grid, theirs: Grid, o: Objective, margin_: float | None, matched: bool) -> dict:
    """One comparison (``analysis.pipeline.compare_grids``) with its feasibility and P(A beats B)."""
    if matched and mine.values.shape != theirs.values.shape:
        matched = False  # a replicate missing on one side: the pairs of replicates are not one to one
    return {**compare_grids(mine, theirs, o.mode, margin_, matched), "replicate_pairs": MATCHED if matched else CROSSED}


PAIRED_COLUMNS = ["arm", "reference", "budget", "epoch", "metric", "mode", "margin", "level", "n_pairs",
                  "n_feasible_pairs", "replicates_arm", "replicates_reference", "replicate_pairs", "mean_diff", "ci_low",
                  "ci_high", "p_value", "p_equivalent", "detectable", "feasible_arm", "runs_arm",
                  "feasible_reference", "runs_reference", "seed_mean_diff", "seed_ci_low", "seed_ci_high",
                  "seed_p_value", "seed_p_equivalent", "seed_detectable", "seeds_for_margin", "replicates_for_margin",
                  "p_better", "p_better_low", "p_better_high", "censored_arm", "censored_reference"]
MATCHED, CROSSED = "matched", "crossed"


def paired_table(tables: StudyTables, pairs: list[tuple[str, str]], family: list[str],
                 runs: dict[str, pd.DataFrame] | None = None, seeds: list[int] | None = None) -> pd.DataFrame:
    """Each (arm, reference) pair compared at every budget on every anytime metric, paired by seed, at the level
    of the pipeline (``analysis.pipeline``), with Holm's correction within each group of the ``family`` columns
    and a verdict (``analysis.stats``). Feasible first: an arm feasible on a smaller share of its runs than the
    reference is never ``better`` (``feasibility_capped``: it was ahead, and is ``inconclusive``). ``runs``: the
    runs that stand for a label (default: its representing runs, ``analysis.runs.winner_runs``, with the spec's
    search replicates); ``seeds``: the seeds every label runs on (default: the confirmation seeds)."""
    labels = {a for pair in pairs for a in pair}
    given = runs or {}
    runs = {label: given[label] if label in given else winner_runs(tables, label) for label in labels}
    stand = {label: _replicates(runs[label], None if label in given else replicates(tables, label)) for label in labels}
    seeds = list(seeds if seeds is not None else tables.spec.confirm.seeds)
    rows = []
    for fraction, epoch in tables.spec.confirm.budget_epochs(tables.spec.epochs):
        values = {label: run_values(tables, runs[label], epoch) for label in labels}
        for arm, reference in pairs:
            mine, theirs = values[arm], values[reference]
            matched = _matched(runs, arm, reference)
            for o in anytime_metrics(tables):
                if o.metric not in mine or o.metric not in theirs:
                    continue
                censored = (int(mine["censored"].sum()), int(theirs["censored"].sum())) \
                    if o.metric == EPOCHS_TO_EXACT else (0, 0)
                grids = (_grid(mine, runs[arm], stand[arm], seeds, o.metric),
                         _grid(theirs, runs[reference], stand[reference], seeds, o.metric))
                rows.append({"arm": arm, "reference": reference, "budget": fraction, "epoch": epoch,
                             "metric": o.metric, "mode": o.mode, "margin": margin(tables, o.metric),
                             **_compare(*grids, o, margin(tables, o.metric), matched),
                             "censored_arm": censored[0], "censored_reference": censored[1]})
    decided = decide(pd.DataFrame(rows, columns=PAIRED_COLUMNS), family)
    decided["feasibility_capped"] = False
    if not decided.empty:
        share = decided["feasible_arm"] / decided["runs_arm"].clip(lower=1)
        less = share < decided["feasible_reference"] / decided["runs_reference"].clip(lower=1)
        capped = (decided["verdict"] == BETTER) & less
        decided.loc[capped, "verdict"] = INCONCLUSIVE
        decided.loc[capped, "feasibility_capped"] = True
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
    metric (the verdict of ``paired_table``: at the level of the pipeline where the arms have search replicates,
    feasible first, Holm-corrected) and feasible on every run (a better selection metric bought by giving up
    reconstruction is not an answer, and a diverged seed is an infeasible one). An arm ahead on the metric but
    infeasible on some run is named as such. The other objectives do not decide; where the winner is worse on
    one, the sentence names the trade-off."""
    selection = tables.spec.selection
    fixed = tables.fixed_arm()
    if fixed is None:
        return None, "No reference arm in this study (no fixed-λ arm, no reference): no winner can be named."
    final = full_budget(paired)
    rows = final[final["metric"] == selection.metric] if not final.empty else final
    excluded, eligible = [], []
    for r in rows.itertuples() if not rows.empty else []:
        feasible, expected = feasible_share(tables, r.arm)
        if feasible == expected:
            eligible.append(r.arm)
        elif r.mean_diff * -selection.sign() > 0:  # ahead on the metric, yet some run missed the constraints
            excluded.append(f"`{r.arm}` (feasible on {feasible}/{expected} runs)")
    better = rows[(rows["verdict"] == BETTER) & rows["arm"].isin(eligible)] if not rows.empty else rows
    test = ("Holm-corrected across arms; at the level of the pipeline: bootstrap over search replicates then seeds, "
            "t-test over replicates")
    note = (f" Ahead on {selection.metric} but infeasible on some run, so never a winner: " + ", ".join(excluded)
            + ".") if excluded else ""
    fixed_share = "{}/{}".format(*feasible_share(tables, fixed))
    if better.empty:
        return None, (f"No winner: no arm that is feasible on every run beats the {tables.reference_text()} on "
                      f"{selection.metric} ({selection.mode}) ({test}).{note}")
    best = better.loc[(better["mean_diff"] * -selection.sign()).idxmax()]
    worse = final[(final["arm"] == best["arm"]) & (final["verdict"] == WORSE)
                  & final["metric"].isin([o.metric for o in tables.spec.objectives])]
    trade = (" Its trade-off: worse on " + ", ".join(f"{r.metric} ({r.mean_diff:+.4g})" for r in worse.itertuples())
             + ".") if not worse.empty else ""
    return str(best["arm"]), (
        f"Winner: `{best['arm']}` beats the {tables.reference_text()} on {selection.metric} by "
        f"{describe(next(better.loc[[best.name]].itertuples()))} ({test}); feasible runs "
        "{}/{}".format(*feasible_share(tables, best["arm"])) + f" vs {fixed_share}.{trade}{note}"
    )
