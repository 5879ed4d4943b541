"""The runs that represent an arm on the confirmation seeds.

Each replicate of an arm's search (``search_replicates``) is represented by its *confirmed configuration*: among
the search trials that replicate confirmed, the one with the most feasible confirmation seeds, then the fewest
failed ones (diverged, errored or missing), then the best mean selection metric (:func:`source_ranking`, the
study's own ``rank_sources``). The arm's representing runs are those configurations' confirmation runs, one per
replicate and seed; a distilled baseline's are the runs made from them. Every spec seed of every replicate counts:
a run that diverged, failed or is missing is an infeasible one, and an arm wins only when every run is feasible.

Example::

    winner_runs(tables, "fixed")[["replicate", "seed", "final_triplet_r_A"]]
"""

from __future__ import annotations

import math

import pandas as pd

from study.protocol.plan import ABLATE, CONFIRM, RETUNE, ablate_seeds
from study.protocol.ranking import ConfirmedRun, rank_sources

from .load import StudyTables

ABANDONED = "abandoned"  # the reason of a trial replaced after a killed driver: not a run of its seed


def _replaced(trials: pd.DataFrame) -> pd.Series:
    reason = trials["reason"].fillna("").astype(str)
    return (trials["status"] == "error") & reason.str.startswith(ABANDONED)


def _source(runs: pd.DataFrame) -> pd.Series:
    """The search trial each confirmation run repeats (runs without one form a single group)."""
    return runs["source_trial"].map(lambda v: "?" if v is None or v != v else str(v))


def replicates(tables: StudyTables, arm: str) -> int:
    """How many search replicates represent an arm: the spec's for its arms and the baselines distilled from them,
    one for an ablation option (its centre is one configuration)."""
    return 1 if _is_ablation(tables, arm) else tables.spec.search_replicates


def confirm_runs(tables: StudyTables, arm: str, replicate: int | None = None) -> pd.DataFrame:
    """Every confirmation run of the arm (of one replicate; None: all), any status, except trials replaced after a
    killed driver."""
    trials = tables.trials
    runs = trials[(trials["phase"] == CONFIRM) & (trials["arm"] == arm) & ~_replaced(trials)]
    return runs if replicate is None else runs[runs["replicate"] == replicate]


def source_ranking(tables: StudyTables, arm: str, replicate: int | None = None) -> pd.DataFrame:
    """Per confirmed search trial of the arm (of one replicate; None: all): seeds feasible, seeds failed
    (diverged, errored or missing) and the mean selection metric over its finished runs, best first."""
    runs = confirm_runs(tables, arm, replicate)
    column = f"final_{tables.spec.selection.metric}"
    # Feasible on val, as the study ranked them (a run's ``feasible`` may be judged on the test split, which no
    # pick reads); a published study written before the test split has ``feasible`` alone, judged on val.
    on_val = "feasible_val" if "feasible_val" in runs else "feasible"
    confirmed = [
        ConfirmedRun(source, int(r["seed"]), bool(r["usable"]), bool(r[on_val]),
                     float(r[column]) if column in r and r["usable"] and r[column] == r[column] else math.nan)
        for source, (_, r) in zip(_source(runs), runs.iterrows())
    ]
    ranked = rank_sources(confirmed, tables.spec.confirm.seeds, tables.spec.selection.mode)
    table = pd.DataFrame(ranked, columns=["source", "feasible", "failed", "mean"])
    return table.rename(columns={"source": "source_trial"})


def confirmation_winner(tables: StudyTables, arm: str, replicate: int | None = None) -> str | None:
    """The confirmed configuration (its source search trial) of one replicate of the arm — None: of the arm over
    every replicate, the study's ablation centre and the export's pick — or None when it has no confirmation run."""
    ranking = source_ranking(tables, arm, replicate)
    return None if ranking.empty else str(ranking["source_trial"].iloc[0])


def derived_runs(tables: StudyTables, arm: str) -> pd.DataFrame | None:
    """The runs of an arm made from another arm's confirmed runs (distilled baselines, ablation options), or None
    for other arms.

    Such a run's ``source_arm`` names its parent arm and ``source_trial`` the parent's run it was made from; only
    the runs made from the parent's representing runs represent the arm."""
    trials = tables.trials
    mine = trials[(trials["arm"] == arm) & (trials["phase"] != RETUNE) & ~_replaced(trials)]
    if "source_arm" not in mine or mine.empty or mine["source_arm"].isna().all():
        return None
    parent = str(mine["source_arm"].dropna().iloc[0])
    return mine[mine["source_trial"].isin(set(winner_runs(tables, parent)["trial_id"]))]


def winner_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    """The runs that represent the arm on the confirmation seeds (any status), by replicate and seed: each
    replicate's confirmed configuration's confirmation runs, or for a derived arm the runs made from them."""
    derived = derived_runs(tables, arm)
    if derived is not None:
        return derived.sort_values(["replicate", "seed"])
    frames = []
    for replicate in range(replicates(tables, arm)):
        runs = confirm_runs(tables, arm, replicate)
        frames.append(runs[_source(runs) == confirmation_winner(tables, arm, replicate)])
    runs = pd.concat(frames) if frames else tables.trials.iloc[0:0]
    return runs.sort_values(["replicate", "seed"])


def _is_ablation(tables: StudyTables, arm: str) -> bool:
    mine = tables.trials[tables.trials["arm"] == arm]
    return not mine.empty and bool(mine["phase"].isin([ABLATE, RETUNE]).all())


def feasible_share(tables: StudyTables, arm: str) -> tuple[int, int]:
    """(feasible runs, expected runs) of the arm's representing runs: one per seed it runs on (the confirmation
    seeds; an ablation option's: the ablation's) and replicate; a missing run is an infeasible one."""
    runs = winner_runs(tables, arm)
    seeds = ablate_seeds(tables.spec) if _is_ablation(tables, arm) else tables.spec.confirm.seeds
    kept = runs[runs["feasible"].astype(bool) & runs["seed"].isin(seeds)]
    return int(len(kept[["replicate", "seed"]].drop_duplicates())), len(seeds) * replicates(tables, arm)


def all_feasible(tables: StudyTables, arm: str) -> bool:
    feasible, expected = feasible_share(tables, arm)
    return feasible == expected
