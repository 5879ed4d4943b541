"""The report's answer at a glance: one row per arm against the fixed-λ reference, before any prose.

Per arm: its confirmation runs that met the constraints; the difference on the selection metric over the pairs of
runs that both met them (``n_feasible_pairs``), with the 95% interval its verdict rests on (``level``: ``pipeline``,
a bootstrap over search replicates then seeds; ``seed``, a t-interval over seeds when an arm has one replicate, the
search's own variance unmeasured), the verdict, P(arm beats reference) over whole pipelines (feasible first; NaN,
printed "too few runs", with fewer than three runs an arm) and the seeds and replicates the spec's margin would
need; the difference and verdict on every other objective; the KL each VAE's codes use (the rate, which is most of the negative ELBO of a run that
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
# An arm whose search (the front included, for the reference) cost more than this many times the reference's
# trial-epochs is flagged: its margin may be bought with compute.
MORE_COMPUTE = 1.25
# What the verdict on the selection metric rests on (``analysis.compare.paired_table``), beside diff and interval.
VERDICT_COLUMNS = ("level", "n_feasible_pairs", "replicates_arm", "feasibility_capped", "p_better", "p_better_low",
                   "p_better_high", "seeds_for_margin", "replicates_for_margin")
BASIS = {"pipeline": "replicates × seeds bootstrap", "seed": "seeds t, search variance unmeasured"}


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
    to_reference = dict(zip(compute["arm"], compute["vs_reference"])) \
        if not compute.empty and "vs_reference" in compute else {}
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
                row.update({k: values.get(k, math.nan) for k in VERDICT_COLUMNS})
        row.update({field: final_mean(runs, field) for field in KL_COLUMNS})
        outside = outside_box(tables, box, arm) if arm != reference and not box.empty else []
        more = to_reference.get(arm, math.nan)
        row.update(box="; ".join(outside) or "inside", compute_vs_optuna=ratio.get(arm, math.nan),
                   compute_vs_reference=more, more_compute=bool(more > MORE_COMPUTE),
                   held_constant=_held(freedom, arm), pruning_audit=_audit(audit, arm))
        rows.append(row)
    return pd.DataFrame(rows)


def _num(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def _true(value) -> bool:
    """A flag read back from a table (NaN where the arm was not compared)."""
    return value is not None and value == value and bool(value)


def _count(value) -> str:
    return "–" if value is None or value != value else str(int(value))


def _difference(row) -> str:
    """The difference on the selection metric, the interval its verdict rests on (labelled) and the verdict."""
    if row["verdict"] in ("reference", "not compared"):
        return str(row["verdict"])
    capped = " (ahead, but feasible on fewer runs than the reference)" if _true(row["feasibility_capped"]) else ""
    return (f"{_num(row['diff'], 3, True)} [{_num(row['ci_low'], 3, True)}, {_num(row['ci_high'], 3, True)}] "
            f"({BASIS.get(row['level'], 'no test')}; {_count(row['n_feasible_pairs'])} feasible pairs) "
            f"**{row['verdict']}**{capped}")


def _p_better(row) -> str:
    """P(arm beats reference) with its interval; "too few runs" where an arm has fewer than three."""
    if row["verdict"] in ("reference", "not compared"):
        return "–"
    if row["p_better"] != row["p_better"]:
        return "too few runs"
    text = f"{_num(row['p_better'], 2)} [{_num(row['p_better_low'], 2)}, {_num(row['p_better_high'], 2)}]"
    return text + (" (seeds only)" if row["level"] == "seed" else "")


def _front(row) -> str:
    """Beyond, on or behind the fixed-λ front, with the margin at the arm's rate (or why not placed), and in how
    many search replicates the arm's pick lands beyond it."""
    replicates = row.get("beyond_replicates")
    replicates = f"; beyond in {replicates} replicates" if isinstance(replicates, str) and replicates else ""
    if not row["front_position"] or row["front_position"] != row["front_position"]:
        reason = row["front_reason"]
        return (f"not placed ({reason})" if reason == reason and reason else "–") + replicates
    low, high = int(row["front_point"]), int(row["front_point_high"])
    points = f"point {low}" if low == high else f"points {low}–{high}"
    past = f"; past the front's reach {_num(row['front_max_rate'], 4)}" if _true(row.get("past_front")) else ""
    return (f"**{row['front_position']}** {_num(row['margin_over_front'], 3, True)} "
            f"[{_num(row['front_ci_low'], 3, True)}, {_num(row['front_ci_high'], 3, True)}] "
            f"(rate {_num(row['arm_rate'], 4)}: front {_num(row['front_value'], 4)} on {points}{past}){replicates}")


def _compute(row) -> str:
    """The arm's search compute against the reference's (search and front), flagged above ``MORE_COMPUTE``."""
    more = row.get("compute_vs_reference", math.nan)
    text = f"compute {_num(more, 2)}x the reference's"
    return text + f" (**more than {MORE_COMPUTE}x**)" if _true(row.get("more_compute")) else text


def conclusions_cells(tables: StudyTables, table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report prints it: one text cell per question."""
    if table.empty:
        return table
    selection = tables.spec.selection.metric
    others = [o.metric for o in tables.spec.objectives if o.metric != selection]
    cells = pd.DataFrame({"arm": table["arm"], "feasible": table["feasible_runs"].astype(str) + "/" + table["runs"].astype(str)})
    cells[f"mean {selection}"] = table[f"mean_{selection}"].map(lambda v: _num(v, 4))
    if "front_position" in table:
        cells["vs fixed-λ front (margin at its rate [95% CI])"] = [_front(r) for _, r in table.iterrows()]
    cells[f"Δ {selection} [95% CI, what the verdict rests on]"] = [_difference(r) for _, r in table.iterrows()]
    cells["P(beats ref)"] = [_p_better(r) for _, r in table.iterrows()]
    cells["margin needs"] = [f"{_num(r['seeds_for_margin'], 3)} seeds; {_num(r['replicates_for_margin'], 3)} replicates"
                             for _, r in table.iterrows()]
    for metric in others:
        cells[f"Δ {metric}"] = [f"{_num(r[f'{metric}_diff'], 3, True)} {r[f'{metric}_verdict']}"
                                if r[f"{metric}_verdict"] != "reference" else "reference" for _, r in table.iterrows()]
    cells["KL A / B (nats)"] = [f"{_num(a, 3)} / {_num(b, 3)}" for a, b in zip(table["kl_A"], table["kl_B"])]
    cells["fairness"] = [f"box: {r['box']}; {_compute(r)}; held: {r['held_constant']}; "
                         f"audit: {r['pruning_audit']}" for _, r in table.iterrows()]
    return cells
