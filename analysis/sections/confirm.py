"""Confirmation seeds: the mean and 95% t-interval of every metric on each arm's confirmed configuration
(``tables/confirm_summary.csv``, ``analysis.compare.confirm_summary``)."""

from __future__ import annotations

import pandas as pd

from ..compare import confirm_summary
from ..load import StudyTables
from .base import Computed, Section
from .text import link, markdown_table


def confirm_overview(summary: pd.DataFrame) -> pd.DataFrame:
    """arm x metric, each cell 'mean [CI low, CI high] (n)'."""
    if summary.empty:
        return summary
    cells = summary.assign(cell=[
        f"{r.mean:.4g} [{r.ci_low:.4g}, {r.ci_high:.4g}] (n={r.n})" if r.n else "" for r in summary.itertuples()
    ])
    return cells.pivot(index="arm", columns="metric", values="cell").reindex(
        columns=list(dict.fromkeys(summary["metric"]))).reset_index()


class Confirm(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"confirm_summary": confirm_summary(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return (f"Mean [95% t-interval] (n seeds) of the final epoch. {link('confirm_summary')}\n\n"
                + markdown_table(confirm_overview(computed["confirm_summary"])))


SECTION = Confirm("confirm", "Confirmation seeds (winner configuration of each arm)", tables=("confirm_summary",))
