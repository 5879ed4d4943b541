"""The figures of the comparisons that weigh one arm against another, under ``<study>/plots/`` (the plotting
helpers of ``analysis.plots``).

expected_best.png: each arm's expected best selection value among n search trials (``analysis.tuning``), with
its bootstrap band, against n and against the trial-epochs n trials cost.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .load import StudyTables
from .plots import _grid, _legend, _save


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
