"""The report's answer at a glance: one row per arm against the fixed-λ reference, before any prose.

Per arm: its confirmation runs that met the constraints; the difference on the selection metric with its 95%
interval, verdict, P(arm beats reference) and the seeds the spec's margin would need; the difference and verdict
on every other objective; the KL each VAE's codes use (the rate, which is most of the negative ELBO of a run that
reconstructs); and the fairness notes: weights outside the reference's box, search compute against the Optuna
arms' mean, keys this arm holds constant while another searches them, and what the pruning audit found.

``tables/conclusions.csv`` holds the numbers; the report prints the same rows as text cells.

Example::

    conclusions_table(tables, paired, box, compute, freedom, audit_summary)[["arm", "diff", "verdict"]]
"""

from __future__ import annotations

import math

import pandas as pd

from .compare import full_budget, main_arms
from .load import StudyTables
from .runs import feasible_share, winner_runs
from .trajectory import outside_box

KL_COLUMNS = ("kl_A", "kl_B")


def final_mean(runs: pd.DataFrame, field: str) -> float:
    """The mean of a field's final value over runs (NaN without the field or runs)."""
    column = f"final_{field}"
    return float(runs[column].astype(float).mean()) if column in runs and len(runs) else math.nan


def _held(freedom: pd.DataFrame, arm: str) -> str:
    keys = freedom.loc[freedom["held_in"] == arm, "key"].tolist() if not freedom.empty else []
    return ", ".join(keys) or "none"


def _audit(summary: pd.DataFrame, arm: str) -> str:
    mine = summary[summary["arm"] == arm] if not summary.empty else summary
    if mine.empty:
        return "none audited"
    row = mine.iloc[0]
    text = f"{int(row['would_be_picked'])}/{int(row['audited'])} beat the pick"
    if not int(row["would_be_picked"]):
        return text
    gain = float(row["largest_gain"])
    return text + (f" (up to {gain:+.3g})" if gain > 0 else f" (nearer the constraints; {gain:+.3g} on the metric)")


def conclusions_table(tables: StudyTables, paired: pd.DataFrame, box: pd.DataFrame, compute: pd.DataFrame,
                      freedom: pd.DataFrame, audit: pd.DataFrame) -> pd.DataFrame:
    """One row per main arm (the reference first), numbers only where a number exists (see the module)."""
    spec, reference = tables.spec, tables.fixed_arm()
    final = full_budget(paired)
    selection = spec.selection.metric
    others = [o.metric for o in spec.objectives if o.metric != selection]
    ratio = dict(zip(compute["arm"], compute["vs_optuna_mean"])) if not compute.empty else {}
    rows = []
    for arm in main_arms(tables):
        runs = winner_runs(tables, arm)
        feasible, expected = feasible_share(tables, arm)
        row = {"arm": arm, "feasible_runs": feasible, "runs": expected, f"mean_{selection}": final_mean(runs, selection)}
        mine = final[(final["arm"] == arm)] if not final.empty else final
        for metric, prefix in ((selection, ""), *((m, f"{m}_") for m in others)):
            found = mine[mine["metric"] == metric] if not mine.empty else mine
            values = found.iloc[0] if not found.empty else {}
            row[f"{prefix}diff"] = values.get("mean_diff", math.nan)
            if not prefix:
                row.update({k: values.get(k, math.nan) for k in ("ci_low", "ci_high", "p_holm")})
            row[f"{prefix}verdict"] = values.get("verdict", "reference" if arm == reference else "not compared")
            if not prefix:
                row.update({k: values.get(k, math.nan) for k in ("p_better", "p_better_low", "p_better_high",
                                                                  "replicates_agree", "seeds_for_margin")})
        row.update({field: final_mean(runs, field) for field in KL_COLUMNS})
        outside = outside_box(tables, box, arm) if arm != reference and not box.empty else []
        row.update(box="; ".join(outside) or "inside", compute_vs_optuna=ratio.get(arm, math.nan),
                   held_constant=_held(freedom, arm), pruning_audit=_audit(audit, arm))
        rows.append(row)
    return pd.DataFrame(rows)


def _num(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def conclusions_cells(tables: StudyTables, table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report prints it: one text cell per question."""
    if table.empty:
        return table
    selection = tables.spec.selection.metric
    others = [o.metric for o in tables.spec.objectives if o.metric != selection]
    cells = pd.DataFrame({"arm": table["arm"], "feasible": table["feasible_runs"].astype(str) + "/" + table["runs"].astype(str)})
    cells[f"mean {selection}"] = table[f"mean_{selection}"].map(lambda v: _num(v, 4))
    cells[f"Δ {selection} [95% CI]"] = [
        "reference" if r["verdict"] == "reference" else
        f"{_num(r['diff'], 3, True)} [{_num(r['ci_low'], 3, True)}, {_num(r['ci_high'], 3, True)}] **{r['verdict']}**"
        for _, r in table.iterrows()]
    cells["P(beats ref)"] = [f"{_num(r['p_better'], 2)} [{_num(r['p_better_low'], 2)}, {_num(r['p_better_high'], 2)}]"
                             if r["p_better"] == r["p_better"] else "–" for _, r in table.iterrows()]
    cells["seeds for margin"] = table["seeds_for_margin"].map(lambda v: _num(v, 3))
    for metric in others:
        cells[f"Δ {metric}"] = [f"{_num(r[f'{metric}_diff'], 3, True)} {r[f'{metric}_verdict']}"
                                if r[f"{metric}_verdict"] != "reference" else "reference" for _, r in table.iterrows()]
    cells["KL A / B (nats)"] = [f"{_num(a, 3)} / {_num(b, 3)}" for a, b in zip(table["kl_A"], table["kl_B"])]
    cells["fairness"] = [f"box: {r['box']}; compute {_num(r['compute_vs_optuna'], 2)}x; held: {r['held_constant']}; "
                         f"audit: {r['pruning_audit']}" for _, r in table.iterrows()]
    return cells
