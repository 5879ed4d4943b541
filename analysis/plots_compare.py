"""The figures of the comparisons that weigh one arm against another, under ``<study>/plots/`` (the plotting
helpers of ``analysis.plots``).

expected_best.png: each arm's expected best selection value among n search trials (``analysis.tuning``), with
its bootstrap band, against n and against the trial-epochs n trials cost.

tradeoff.png: the selection metric against each other objective and against exact match (the mean of both VAEs),
one point per confirmation run of every arm (its pick's runs on every seed and replicate; a cross: a run that
missed the constraints), each arm's front (its runs no other run of the arm dominates on the two axes) drawn as a
line: what an arm gives up on one objective for the other. With a fixed-λ front (``analysis.front``), its
non-dominated feasible grid points (their means over the front's seeds) are drawn as a black line with squares:
an arm helps only where its runs lie beyond it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import matplotlib.pyplot as plt
from matplotlib.ticker import AutoLocator

from study.protocol import Objective

from .compare import main_arms, pareto_mask
from .load import StudyTables
from .plots import _grid, _legend, _save
from .runs import winner_runs


def expected_best_plot(tables: StudyTables, table: pd.DataFrame, path: Path) -> Path:
    metric = tables.spec.selection.metric
    fig, (by_n, by_cost) = _grid(2, width=5.5)
    for arm, rows in table.groupby("arm", sort=False):
        for ax, x in ((by_n, "n"), (by_cost, "trial_epochs")):
            line, = ax.plot(rows[x], rows["expected"], marker="o", markersize=3, label=arm)
            ax.fill_between(rows[x], rows["low"], rows["high"], color=line.get_color(), alpha=0.15)
    by_n.set_xlabel("search trials n")
    by_cost.set_xlabel("trial-epochs of n trials (mean cost)")
    for ax in (by_n, by_cost):
        ax.set_ylabel(f"expected best {metric}")
        ax.grid(alpha=0.3)
    _legend(by_n, fontsize=7)
    fig.suptitle("Expected best of n search trials (feasible, every epoch), 95% bootstrap band")
    return _save(fig, path)


COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


EXACT_AB = "exact_match_AB"  # the mean of both VAEs' exact match, drawn as one more axis


def _with_exact(frame: pd.DataFrame) -> pd.DataFrame:
    columns = [f"final_{m}" for m in ("val_exact_match_A", "val_exact_match_B")]
    if set(columns) <= set(frame):
        frame = frame.assign(**{f"final_{EXACT_AB}": frame[columns].astype(float).mean(axis=1)})
    return frame


def tradeoff_plot(tables: StudyTables, path: Path, front: pd.DataFrame | None = None) -> Path:
    selection = tables.spec.selection
    others = [o for o in tables.spec.objectives if o.metric != selection.metric]
    others.append(Objective(metric=EXACT_AB, mode="max"))
    fig, axes = _grid(len(others), width=5.0, height=3.8)
    for ax, other in zip(axes, others):
        ax.xaxis.set_major_locator(AutoLocator())
        columns = [f"final_{other.metric}", f"final_{selection.metric}"]
        if front is not None and not front.empty:
            points = _with_exact(front[front["non_dominated"].astype(bool)])
            if set(columns) <= set(points):
                points = points.sort_values(columns[0])
                ax.plot(points[columns[0]], points[columns[1]], color="black", marker="s", markersize=4,
                        linewidth=1.2, label="fixed-λ front")
        for index, arm in enumerate(main_arms(tables)):
            runs = _with_exact(winner_runs(tables, arm))
            if runs.empty or not set(columns) <= set(runs):
                continue
            runs = runs.dropna(subset=columns)
            if runs.empty:
                continue
            feasible, color = runs["feasible"].astype(bool), COLORS[index % len(COLORS)]
            ax.scatter(runs.loc[feasible, columns[0]], runs.loc[feasible, columns[1]], s=14, alpha=0.6, color=color,
                       label=arm if feasible.any() else None)
            ax.scatter(runs.loc[~feasible, columns[0]], runs.loc[~feasible, columns[1]], s=18, marker="x", alpha=0.6,
                       color=color, label=None if feasible.any() else arm)
            own = runs[pareto_mask(runs, [other, selection])].sort_values(columns[0])
            ax.plot(own[columns[0]], own[columns[1]], color=color, alpha=0.9, linewidth=1)
        ax.set_xlabel(f"{other.metric} ({other.mode})")
        ax.set_ylabel(f"{selection.metric} ({selection.mode})")
        ax.grid(alpha=0.3)
    _legend(axes[0], fontsize=7)
    fig.suptitle("Trade-offs: every confirmation run (x: missed the constraints), each arm's front, the fixed-λ front")
    return _save(fig, path)
