"""The pruning audit (``study.phases.audit``): search trials that early stopping stopped, trained to the last
epoch. For each, whether the ranking rule would have picked it over its replicate's selected search trial (the
configuration the arm confirmed in that replicate) and by how much, on the search seed both ran on. Neither Ray
Tune nor Optuna reports what its pruning threw away; this table is the evidence that it did not decide the
answer.

Example::

    pruning_audit(tables)[["arm", "trial_id", "rung_epoch", "final_value", "beats_pick", "gain"]]
"""

from __future__ import annotations

import math

import pandas as pd

from study.protocol.plan import AUDIT, SEARCH
from study.protocol.ranking import ranking_score

from .load import StudyTables

COLUMNS = ["arm", "replicate", "trial_id", "rung_epoch", "rung_value", "final_value", "final_feasible",
           "pick", "pick_value", "pick_feasible", "beats_pick", "gain"]


def _record(tables: StudyTables, row: pd.Series) -> dict:
    """A trial's final record as the ranking reads it (status, every final_ number under its field name)."""
    record = {k.removeprefix("final_"): v for k, v in row.items() if k.startswith("final_") and v == v}
    return {**record, "status": "ok" if row["usable"] else str(row["status"])}


def pruning_audit(tables: StudyTables) -> pd.DataFrame:
    """One row per audited trial: where it was stopped (its rung epoch and selection value there), its final
    selection value and feasibility, its replicate's pick (the selected search trial) with the same, whether the
    ranking rule puts the audited trial first (``beats_pick``) and the difference in the selection metric
    (``gain``, oriented: > 0 is better)."""
    trials, spec = tables.trials, tables.spec
    metric, sign = spec.selection.metric, -spec.selection.sign()
    audited = trials[(trials["phase"] == AUDIT) & trials["usable"]]
    search = trials[trials["phase"] == SEARCH]
    rows = []
    for _, run in audited.iterrows():
        stopped = search[(search["arm"] == run["arm"]) & (search["trial_id"] == run["source_trial"])]
        mine = search[(search["arm"] == run["arm"]) & (search["replicate"] == run["replicate"])
                      & (search["status"] == "ok") & (search["final_epoch"] >= spec.epochs)]
        feasible = mine[mine["feasible"]]
        pool = feasible if not feasible.empty else mine
        pick = pool.loc[pool[f"final_{metric}"].astype(float).mul(sign).idxmax()] if not pool.empty else None
        final = _record(tables, run)
        row = {"arm": run["arm"], "replicate": run["replicate"], "trial_id": run["trial_id"],
               "rung_epoch": stopped["final_epoch"].iloc[0] if not stopped.empty else math.nan,
               "rung_value": stopped[f"final_{metric}"].iloc[0] if not stopped.empty else math.nan,
               "final_value": run.get(f"final_{metric}", math.nan), "final_feasible": bool(run["feasible"]),
               "pick": None, "pick_value": math.nan, "pick_feasible": False, "beats_pick": False, "gain": math.nan}
        if pick is not None:
            theirs = _record(tables, pick)
            row.update(pick=pick["trial_id"], pick_value=pick[f"final_{metric}"], pick_feasible=bool(pick["feasible"]),
                       beats_pick=ranking_score(spec, final) > ranking_score(spec, theirs),
                       gain=sign * (float(row["final_value"]) - float(pick[f"final_{metric}"])))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def audit_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm: trials audited, how many would have been picked over the confirmed configuration, the largest
    gain among those."""
    if table.empty:
        return pd.DataFrame(columns=["arm", "audited", "would_be_picked", "largest_gain"])
    grouped = table.groupby("arm", sort=False)
    return pd.DataFrame({"audited": grouped.size(), "would_be_picked": grouped["beats_pick"].sum().astype(int),
                         "largest_gain": grouped.apply(lambda g: g.loc[g["beats_pick"], "gain"].max(),
                                                       include_groups=False)}).reset_index()


def audit_lines(tables: StudyTables, table: pd.DataFrame) -> str:
    """The report's section on the audit."""
    if tables.spec.audit is None:
        return "No pruning audit in this study (a spec's `audit` section asks for one).\n"
    summary = audit_summary(table)
    if summary.empty:
        return "No audited trial finished (no search trial was stopped early, or the audit has not run yet).\n"
    parts = []
    for r in summary.itertuples():
        gain = ""
        if r.would_be_picked:  # a negative gain: ranked first for missing the constraints by less, not for the metric
            gain = (f", by up to {r.largest_gain:+.4g}" if r.largest_gain > 0 else
                    f", for missing the constraints by less ({r.largest_gain:+.4g} on the selection metric)")
        parts.append(f"`{r.arm}`: {r.would_be_picked} of {r.audited} would have been picked over its pick{gain}")
    return "- " + "; ".join(parts) + ".\n"
