"""Search: every arm's search trials with the Pareto fronts over the objectives and the configuration each
replicate selected (``tables/search.csv``, ``analysis.compare.search_table``), and how TPE drew them."""

from __future__ import annotations

import pandas as pd

from ..compare import search_table
from ..load import StudyTables
from .base import Computed, Section
from .text import link, markdown_table


def _sampling(study: StudyTables) -> str:
    """Per arm: how many search trials TPE drew at random (its start-up) and how many from its model."""
    search = study.trials[study.trials["phase"] == "search"]
    if "sampling" not in search:
        return ""
    parts = []
    for arm, group in search.groupby("arm", sort=False):
        if arm in study.pbt_arms():  # drawn by population based training (its own section)
            continue
        counts = group["sampling"].map(lambda v: v if isinstance(v, str) else "unknown").value_counts()
        start = study.spec.arms[arm].startup_trials if arm in study.spec.arms else None
        parts.append(f"`{arm}` {counts.get('random', 0)} random, {counts.get('model', 0)} model-guided"
                     + (f" (start-up {start})" if start is not None else ""))
    return "Search trials by how TPE drew them: " + "; ".join(parts) + ".\n" if parts else ""


class Search(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"search": search_table(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        search = computed["search"]
        shown = search[[c for c in search.columns if c not in ("params", "reason")]]
        return f"""\
`pareto`: on the front of the arm's finished trials over the objectives; `pareto_feasible`: on the front of its
feasible trials; `selected`: the selection rule's pick. {link("search")}

{_sampling(study)}
{markdown_table(shown)}"""


SECTION = Search("search", "Search: Pareto fronts and the selected configuration", tables=("search",))
