"""The fixed-λ front and every arm measured against it (Xin et al., "Do Current Multi-Task Optimization Methods in
Deep Learning Even Help?", NeurIPS 2022; Kurin et al., "In Defense of the Unitary Scalarization for Deep
Multi-Task Learning", NeurIPS 2022): an adaptive arm helps only where it lands beyond the trade-off curve that
constant weights trace, not merely above one tuned point.

``tables/front.csv`` (:func:`front_table`): one row per grid point of the spec's ``front`` — its keys, the mean
(and standard deviation) over its seeds of every objective, of the rate and of exact match per VAE, its runs,
its feasible runs, whether it is feasible (on every seed), whether it is non-dominated among the feasible
points on the spec's objectives, and the search replicates whose pick it was (``picked_in``).

The margin over the front (:func:`margin_over_front`): an arm's mean selection metric over its feasible
confirmation runs minus that of the best feasible front point whose rate (the mean negative ELBO,
``val_loss_unweighted``) is no higher than the arm's mean rate — the
margin at equal or lower rate, oriented so that a positive margin is better. Its 95% interval is Welch's, from
the arm's spread (over its replicates' means when it has several that differ: the search is part of the unit;
else over its runs) and the point's spread over its seeds. ``beyond`` when the interval lies above zero, ``behind`` when below,
``on`` otherwise; empty, with the reason, when no feasible point lies at or below the arm's rate.

Example::

    front = front_table(tables)
    margins = front_margins(tables, front)[["arm", "margin_over_front", "front_position"]]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.spec.plan import CONFIRM, FRONT
from study.spec.reference import front_points, point_of

from .compare import main_arms, pareto_mask
from .load import StudyTables
from .runs import winner_runs
from .stats import CONFIDENCE

RATE = "val_loss_unweighted"  # the negative ELBO of the pair: on this data essentially the KL nats (the rate)
EXACT = ("val_exact_match_A", "val_exact_match_B")
BEYOND, ON, BEHIND = "beyond", "on", "behind"
MARGIN_COLUMNS = ["arm", "margin_over_front", "front_ci_low", "front_ci_high", "front_position", "front_point",
                  "front_point_rate", "arm_rate", "front_reason"]


def front_runs(tables: StudyTables) -> pd.DataFrame:
    trials = tables.trials
    return trials[trials["phase"] == FRONT].copy() if "phase" in trials else trials.iloc[:0]


def _values(runs: pd.DataFrame, metric: str) -> pd.Series:
    """A field's final values (the metrics as the spec names them, as every arm's are compared; a run's
    feasibility is the ``feasible`` column's, judged on the test split where the run carries it)."""
    column = f"final_{metric}"
    return runs[column].astype(float) if column in runs else pd.Series(math.nan, index=runs.index)


def front_table(tables: StudyTables) -> pd.DataFrame:
    """One row per grid point (see the module docstring); empty without a front."""
    spec = tables.spec
    runs = front_runs(tables)
    if spec.front is None or runs.empty:
        return pd.DataFrame()
    runs["point"] = runs["trial_id"].map(point_of)
    trials = tables.trials
    confirmed = trials[(trials["phase"] == CONFIRM) & (trials["arm"] == spec.front.arm)]
    metrics = list(dict.fromkeys([*(o.metric for o in spec.tracked_objectives()), RATE, *EXACT]))
    rows = []
    for index, point in enumerate(front_points(spec)):
        mine = runs[runs["point"] == index]
        usable = mine[mine["usable"].astype(bool)]
        row = {"point": index, **point, "runs": len(spec.front.seeds), "finished": len(usable),
               "feasible_runs": int(mine["feasible"].astype(bool).sum())}
        for metric in metrics:
            values = _values(usable, metric).dropna()
            row[f"final_{metric}"] = float(values.mean()) if len(values) else math.nan
            row[f"sd_{metric}"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        row["feasible"] = row["feasible_runs"] == row["runs"]
        picked = sorted({int(r) for r in confirmed.loc[confirmed["source_trial"].isin(mine["trial_id"]), "replicate"]})
        row["picked_in"] = ",".join(map(str, picked))  # the replicates whose pick this point was
        rows.append(row)
    table = pd.DataFrame(rows)
    table["non_dominated"] = False
    feasible = table[table["feasible"]]
    if not feasible.empty:
        table.loc[feasible.index, "non_dominated"] = pareto_mask(feasible, spec.objectives)
    return table


def welch_interval(a: np.ndarray, b_mean: float, b_sd: float, b_n: int) -> tuple[float, float]:
    """The 95% Welch interval of mean(a) - b_mean, b known by its mean, sd and n (a point of one seed adds no
    spread: its sd is taken as 0). NaN bounds when ``a`` has fewer than two values or no spread at all."""
    n_a = len(a)
    if n_a < 2:
        return math.nan, math.nan
    var_a = float(np.var(a, ddof=1)) / n_a
    var_b = (b_sd**2 / b_n) if b_n > 1 and b_sd == b_sd else 0.0
    se = math.sqrt(var_a + var_b)
    if se == 0:  # identical runs (one configuration on one seed): no spread measured, no interval
        return math.nan, math.nan
    diff = float(np.mean(a)) - b_mean
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + (var_b**2 / (b_n - 1) if var_b else 0.0))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return diff - half, diff + half


def margin_over_front(runs: pd.DataFrame, front: pd.DataFrame, selection: str, mode: str) -> dict:
    """One arm's margin over the front. ``runs``: its confirmation runs with ``replicate``, ``feasible``,
    ``selection`` and ``rate`` columns; ``front``: :func:`front_table`'s rows with ``feasible``,
    ``final_<selection>``, ``sd_<selection>``, ``finished`` and ``final_rate``/``rate`` as ``rate``."""
    empty = {"margin_over_front": math.nan, "front_ci_low": math.nan, "front_ci_high": math.nan,
             "front_position": "", "front_point": None, "front_point_rate": math.nan, "arm_rate": math.nan}
    ok = runs[runs["feasible"].astype(bool)].dropna(subset=["selection", "rate"])
    if ok.empty:
        return {**empty, "front_reason": "no feasible confirmation run"}
    rate = float(ok["rate"].mean())
    empty["arm_rate"] = rate
    points = front[front["feasible"].astype(bool) & (front["rate"] <= rate)].dropna(subset=["selection"])
    if points.empty:
        return {**empty, "front_reason": f"no feasible front point at or below its rate {rate:.4g}"}
    sign = 1.0 if mode == "max" else -1.0
    best = points.loc[(points["selection"] * sign).idxmax()]
    by_replicate = ok.groupby("replicate")["selection"].mean()
    # the replicates' means are the unit, unless they do not vary (every replicate picked one configuration:
    # one draw of the search, whose spread the runs alone measure)
    varies = len(by_replicate) > 1 and float(by_replicate.std(ddof=1)) > 1e-12
    unit = by_replicate.to_numpy(float) if varies else ok["selection"].to_numpy(float)
    low, high = welch_interval(unit, float(best["selection"]), float(best["sd"]), int(best["finished"]))
    margin = sign * (float(ok["selection"].mean()) - float(best["selection"]))
    low, high = sorted((sign * low, sign * high))
    position = "" if math.isnan(low) else BEYOND if low > 0 else BEHIND if high < 0 else ON
    return {"margin_over_front": margin, "front_ci_low": low, "front_ci_high": high, "front_position": position,
            "front_point": int(best["point"]), "front_point_rate": float(best["rate"]), "arm_rate": rate,
            "front_reason": "" if position else "no interval: fewer than two runs, or no spread between them"}


def front_margins(tables: StudyTables, front: pd.DataFrame) -> pd.DataFrame:
    """Per main arm, its margin over the front (:func:`margin_over_front`); empty without a front."""
    if front.empty:
        return pd.DataFrame(columns=MARGIN_COLUMNS)
    selection = tables.spec.selection
    points = front.rename(columns={f"final_{selection.metric}": "selection", f"sd_{selection.metric}": "sd",
                                   f"final_{RATE}": "rate"})
    rows = []
    for arm in main_arms(tables):
        runs = winner_runs(tables, arm)
        frame = pd.DataFrame({"replicate": runs["replicate"], "feasible": runs["feasible"],
                              "selection": _values(runs, selection.metric), "rate": _values(runs, RATE)})
        rows.append({"arm": arm, **margin_over_front(frame, points, selection.metric, selection.mode)})
    return pd.DataFrame(rows, columns=MARGIN_COLUMNS)


def front_lines(tables: StudyTables, front: pd.DataFrame, margins: pd.DataFrame) -> list[str]:
    """The report's words on the front: its size, its non-dominated points, each arm's place against it."""
    if front.empty:
        return []
    spec = tables.spec
    keys = ", ".join(f"`{k}`" for k in spec.front.grid)
    lines = [f"- The fixed-λ front of `{spec.front.arm}`: {len(front)} constant settings of {keys} on "
             f"{len(spec.front.seeds)} seed(s) each ([front.csv](tables/front.csv)); {int(front['feasible'].sum())} "
             f"feasible on every seed, {int(front['non_dominated'].sum())} of them non-dominated."]
    for row in margins.itertuples():
        if row.front_position:
            lines.append(f"- `{row.arm}`: **{row.front_position}** the front, {row.margin_over_front:+.4g} "
                         f"(95% CI {row.front_ci_low:+.4g} to {row.front_ci_high:+.4g}) over front point "
                         f"{row.front_point} at rate {row.front_point_rate:.4g} against its {row.arm_rate:.4g}.")
        else:
            lines.append(f"- `{row.arm}`: not placed against the front ({row.front_reason}).")
    return lines
