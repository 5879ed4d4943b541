"""What an arm's representing runs reach: how soon they reconstruct (epochs to a target), and the quality a user
can count on among the runs that reconstruct on both VAEs (the quality frontier).

The frontier is a mean with its interval over every representing run that reconstructs (every replicate and
seed), never a best of n: a best over 3 runs and a best over 4 are not comparable. Beside the selection metric it
gives the untied triplet concordance of both VAEs (``triplet_untied_A`` / ``_B``, ceiling 1.0): a triplet r
near its ceiling of about 0.75 reads better as the share of orderable triples ordered right.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .compare import EXACT_TARGET
from .load import StudyTables
from .runs import winner_runs
from .stats import t_interval

PER_VAE_RANKING = ("triplet_untied_A", "triplet_untied_B", "triplet_r_A", "triplet_r_B")  # beside the selection metric


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
    """Per arm, over its representing runs that finished every epoch: how many reconstruct on both VAEs (final val
    exact match >= ``target``), and over those the mean [95% t-interval] of the selection metric and the means of
    the untied concordance and of triplet r of each VAE. The quality a user can count on: a run that gave up reconstruction for a
    better selection metric is not on it."""
    metric = tables.spec.selection.metric
    column = f"final_{metric}"
    rows = []
    for arm in tables.arms():
        runs = winner_runs(tables, arm)
        runs = runs[(runs["status"] == "ok") & runs["usable"].astype(bool)]
        exact = [f"final_val_exact_match_{v}" for v in ("A", "B")]
        good = runs[np.logical_and.reduce([runs[c].astype(float) >= target for c in exact])] if len(runs) and all(
            c in runs for c in exact) else runs.iloc[0:0]
        interval = t_interval(good[column].astype(float).tolist() if column in good else [])
        untied = {f"mean_{name}": float(good[f"final_{name}"].astype(float).mean())
                  if f"final_{name}" in good and len(good) else math.nan for name in PER_VAE_RANKING}
        rows.append({"arm": arm, "metric": metric, "target": target, "runs": len(runs), "reconstructing": len(good),
                     "mean": interval["mean"], "ci_low": interval["ci_low"], "ci_high": interval["ci_high"],
                     **untied})
    return pd.DataFrame(rows)
