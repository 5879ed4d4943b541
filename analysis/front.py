"""The fixed-λ front and every arm measured against it (Xin et al., "Do Current Multi-Task Optimization Methods in
Deep Learning Even Help?", NeurIPS 2022; Kurin et al., "In Defense of the Unitary Scalarization for Deep
Multi-Task Learning", NeurIPS 2022): an adaptive arm helps only where it lands beyond the trade-off curve that
constant weights trace, not merely above one tuned point.

``tables/front.csv`` (:func:`front_table`): one row per grid point of the spec's ``front`` — its keys, the mean
(and standard deviation) over its seeds of every objective, of the rate and of exact match per VAE, its runs,
its feasible runs, whether it is feasible (on every seed), whether it is non-dominated among the feasible
points on the spec's objectives, and the search replicates whose pick it was (``picked_in``).

The margin over the front (:func:`margin_over_front`), at the arm's rate: the arm's mean selection metric over
its feasible confirmation runs minus the front's value at its mean rate (the mean negative ELBO,
``val_loss_unweighted``), oriented so that a positive margin is better. The front there is the trade-off
curve of the feasible points (:func:`envelope`: those no feasible point beats at equal or lower rate), linear
between the two points that bracket the arm's rate (``front_point``, ``front_point_high``; ``front_value``):
a constant weighting between two grid points is taken to land between them, which a grid of constant weights
cannot show but a step front (the best point at or below the rate) would credit to the arm as margin. Its
95% interval is Welch's, from the arm's spread (over its replicates' means when it has several that differ:
the search is part of the unit; else over its runs) and the two points' spreads over their seeds, weighted as
in the interpolation. ``beyond`` when the interval lies above zero, ``behind`` when below, ``on`` otherwise;
empty, with the reason, when no feasible point lies at or below the arm's rate. An arm whose rate lies above
every feasible point's (``past_front``, against ``front_max_rate``) is compared with the front's last point:
the front does not reach its rate, so "beyond" there says only that it ranks better by paying more rate than
any constant weighting of the grid paid.

The same per search replicate (:func:`replicate_margins`, ``tables/front_replicates.csv``): each replicate's
pick over its own confirmation runs, so that ``beyond_replicates`` ("k/n" in ``conclusions.csv``) says how
often the whole pipeline, search included, lands beyond the front.

Example::

    front = front_table(tables)
    margins = front_margins(tables, front)[["arm", "margin_over_front", "front_position"]]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.protocol.plan import CONFIRM, FRONT
from study.protocol.reference import front_points, point_of

from .compare import main_arms, pareto_mask
from .load import StudyTables
from .runs import winner_runs
from .stats import CONFIDENCE

RATE = "val_loss_unweighted"  # the negative ELBO of the pair: on this data essentially the KL nats (the rate)
EXACT = ("val_exact_match_A", "val_exact_match_B")
BEYOND, ON, BEHIND = "beyond", "on", "behind"
MARGIN_COLUMNS = ["arm", "margin_over_front", "front_ci_low", "front_ci_high", "front_position", "front_point",
                  "front_point_high", "front_value", "front_point_rate", "arm_rate", "front_max_rate", "past_front",
                  "front_reason", "beyond_replicates"]
REPLICATE_COLUMNS = ["arm", "replicate", "runs", "feasible_runs", "margin_over_front", "front_ci_low",
                     "front_ci_high", "front_position", "front_value", "arm_rate", "past_front", "front_reason"]


def front_runs(tables: StudyTables) -> pd.DataFrame:
    trials = tables.trials
    return trials[trials["phase"] == FRONT].copy() if "phase" in trials else trials.iloc[:0]


def final_values(runs: pd.DataFrame, metric: str) -> pd.Series:
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
            values = final_values(usable, metric).dropna()
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


def _part(point: pd.Series, share: float) -> tuple[float, int]:
    """A front point's part in :func:`welch_interval` when it weighs ``share`` in the front's value: the variance
    of its mean over its seeds times share² (0 for a point of one seed: no spread measured), and its degrees of
    freedom."""
    sd, n = float(point["sd"]), int(point["finished"])
    return (share**2 * sd**2 / n if n > 1 and sd == sd else 0.0), max(n - 1, 1)


def welch_interval(a: np.ndarray, b_mean: float, b_parts: list[tuple[float, int]]) -> tuple[float, float]:
    """The 95% Welch interval of mean(a) - b, where b is a known mean made of parts, each a (variance of its
    mean, degrees of freedom) pair (Satterthwaite's degrees of freedom over every part). NaN bounds when ``a``
    has fewer than two values or nothing has spread."""
    n_a = len(a)
    if n_a < 2:
        return math.nan, math.nan
    parts = [(float(np.var(a, ddof=1)) / n_a, n_a - 1)] + [(v, df) for v, df in b_parts if v > 0]
    total = sum(v for v, _ in parts)
    if total == 0:  # identical runs (one configuration on one seed): no spread measured, no interval
        return math.nan, math.nan
    df = total**2 / sum(v**2 / d for v, d in parts)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * math.sqrt(total)
    diff = float(np.mean(a)) - b_mean
    return diff - half, diff + half


def placed_points(rows: pd.DataFrame) -> pd.DataFrame:
    """The feasible rows with both a selection value and a rate: the front points a curve goes through, or the
    runs an arm is placed by."""
    return rows[rows["feasible"].astype(bool)].dropna(subset=["selection", "rate"])


def envelope(points: pd.DataFrame, sign: float) -> pd.DataFrame:
    """The feasible points no other feasible point beats at equal or lower rate (the rate–selection trade-off
    curve), by rising rate."""
    ordered = points.sort_values(["rate", "selection"], ascending=[True, sign < 0])
    best, keep = -math.inf, []
    for index, row in ordered.iterrows():
        if sign * row["selection"] > best:
            best = sign * row["selection"]
            keep.append(index)
    return ordered.loc[keep]


def front_at(curve: pd.DataFrame, rate: float) -> tuple[float, list[tuple[float, int]], pd.Series, pd.Series]:
    """The front's selection value at ``rate`` on ``curve`` (:func:`envelope`, not empty, its first rate <= rate):
    linear between the two points that bracket it, the last point's past the last rate. Returns the value, its
    parts for :func:`welch_interval`, and the lower and upper points (the same point when not between two)."""
    below = curve[curve["rate"] <= rate].iloc[-1]
    above = curve[curve["rate"] > rate]
    if above.empty:
        return float(below["selection"]), [_part(below, 1.0)], below, below
    upper = above.iloc[0]
    w = (rate - below["rate"]) / (upper["rate"] - below["rate"])  # the upper point's share
    value = (1 - w) * float(below["selection"]) + w * float(upper["selection"])
    return value, [_part(below, 1 - w), _part(upper, w)], below, upper


def margin_over_front(runs: pd.DataFrame, front: pd.DataFrame, selection: str, mode: str) -> dict:
    """One arm's margin over the front at its rate (see the module docstring). ``runs``: its confirmation runs
    with ``replicate``, ``feasible``, ``selection`` and ``rate`` columns; ``front``: :func:`front_table`'s rows
    with ``point``, ``feasible``, ``selection``, ``sd``, ``finished`` and ``rate``."""
    feasible = placed_points(front)
    reach = float(feasible["rate"].max()) if not feasible.empty else math.nan
    empty = {"margin_over_front": math.nan, "front_ci_low": math.nan, "front_ci_high": math.nan,
             "front_position": "", "front_point": None, "front_point_high": None, "front_value": math.nan,
             "front_point_rate": math.nan, "arm_rate": math.nan, "front_max_rate": reach, "past_front": False}
    ok = placed_points(runs)
    if ok.empty:
        return {**empty, "front_reason": "no feasible confirmation run"}
    rate = float(ok["rate"].mean())
    empty["arm_rate"] = rate
    if feasible.empty or float(feasible["rate"].min()) > rate:
        return {**empty, "front_reason": f"no feasible front point at or below its rate {rate:.4g}"}
    sign = 1.0 if mode == "max" else -1.0
    value, parts, below, upper = front_at(envelope(feasible, sign), rate)
    by_replicate = ok.groupby("replicate")["selection"].mean()
    # the replicates' means are the unit, unless they do not vary (every replicate picked one configuration:
    # one draw of the search, whose spread the runs alone measure)
    varies = len(by_replicate) > 1 and float(by_replicate.std(ddof=1)) > 1e-12
    unit = by_replicate.to_numpy(float) if varies else ok["selection"].to_numpy(float)
    low, high = welch_interval(unit, value, parts)
    margin = sign * (float(ok["selection"].mean()) - value)
    low, high = sorted((sign * low, sign * high))
    position = "" if math.isnan(low) else BEYOND if low > 0 else BEHIND if high < 0 else ON
    return {"margin_over_front": margin, "front_ci_low": low, "front_ci_high": high, "front_position": position,
            "front_point": int(below["point"]), "front_point_high": int(upper["point"]), "front_value": value,
            "front_point_rate": float(below["rate"]), "arm_rate": rate, "front_max_rate": reach,
            "past_front": rate > reach,
            "front_reason": "" if position else "no interval: fewer than two runs, or no spread between them"}


def curve_points(tables: StudyTables, front: pd.DataFrame) -> pd.DataFrame:
    """The front's rows with the columns :func:`margin_over_front` reads."""
    metric = tables.spec.selection.metric
    return front.rename(columns={f"final_{metric}": "selection", f"sd_{metric}": "sd", f"final_{RATE}": "rate"})


def placement_runs(tables: StudyTables, runs: pd.DataFrame) -> pd.DataFrame:
    """Trial rows as :func:`margin_over_front` reads them: replicate, feasible, selection metric and rate."""
    return pd.DataFrame({"replicate": runs["replicate"], "feasible": runs["feasible"],
                         "selection": final_values(runs, tables.spec.selection.metric),
                         "rate": final_values(runs, RATE)})


def _arm_runs(tables: StudyTables, arm: str) -> pd.DataFrame:
    return placement_runs(tables, winner_runs(tables, arm))


def replicate_margins(tables: StudyTables, front: pd.DataFrame) -> pd.DataFrame:
    """Per main arm and search replicate, that replicate's pick against the front (:func:`margin_over_front` over
    its confirmation runs alone, the seeds its unit): how often the whole pipeline, search included, lands beyond
    the front (``tables/front_replicates.csv``); empty without a front."""
    if front.empty:
        return pd.DataFrame(columns=REPLICATE_COLUMNS)
    selection, points, rows = tables.spec.selection, curve_points(tables, front), []
    for arm in main_arms(tables):
        for replicate, runs in _arm_runs(tables, arm).groupby("replicate"):
            placed = margin_over_front(runs, points, selection.metric, selection.mode)
            rows.append({"arm": arm, "replicate": int(replicate), "runs": len(runs),
                         "feasible_runs": int(runs["feasible"].astype(bool).sum()), **placed})
    return pd.DataFrame(rows, columns=REPLICATE_COLUMNS)


def front_margins(tables: StudyTables, front: pd.DataFrame, replicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per main arm, its margin over the front (:func:`margin_over_front`) and, from ``replicates``
    (:func:`replicate_margins`), in how many of its search replicates its pick lands beyond the front
    (``beyond_replicates``, "k/n"); empty without a front."""
    if front.empty:
        return pd.DataFrame(columns=MARGIN_COLUMNS)
    selection, points, rows = tables.spec.selection, curve_points(tables, front), []
    for arm in main_arms(tables):
        placed = margin_over_front(_arm_runs(tables, arm), points, selection.metric, selection.mode)
        beyond = ""
        if replicates is not None and not (own := replicates[replicates["arm"] == arm]).empty:
            beyond = f"{int((own['front_position'] == BEYOND).sum())}/{len(own)}"
        rows.append({"arm": arm, **placed, "beyond_replicates": beyond})
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
        often = (f" Its pick lands beyond the front in {row.beyond_replicates} search replicates "
                 "([front_replicates.csv](tables/front_replicates.csv))." if row.beyond_replicates else "")
        if row.front_position:
            past = (f"; its rate is past the front's reach (highest feasible point at {row.front_max_rate:.4g}): "
                    "the front does not say what a constant weighting would rank at its rate" if row.past_front else "")
            low, high = int(row.front_point), int(row.front_point_high)
            between = f"front point {low}" if low == high else f"the front between points {low} and {high}"
            lines.append(f"- `{row.arm}`: **{row.front_position}** the front, {row.margin_over_front:+.4g} "
                         f"(95% CI {row.front_ci_low:+.4g} to {row.front_ci_high:+.4g}) over {between}, "
                         f"{row.front_value:.4g} at its rate {row.arm_rate:.4g}{past}.{often}")
        else:
            lines.append(f"- `{row.arm}`: not placed against the front ({row.front_reason}).{often}")
    return lines
