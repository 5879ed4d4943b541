"""Plots: every figure of the study under ``plots/`` (``analysis.plots``, ``analysis.plots_compare``), drawn when
the section computes and shown in the order they were drawn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..load import StudyTables
from ..plots import PLOTS_DIR, make_plots
from ..plots_compare import expected_best_plot, tradeoff_plot
from .base import Computed, Section


class Plots(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        out = Path(study.study_dir) / PLOTS_DIR
        drawn = make_plots(study, computed["confirm_summary"])
        drawn["tradeoff"] = tradeoff_plot(study, out / "tradeoff.png", computed["front"])
        if not (expected := computed["expected_best"]).empty:
            drawn["expected_best"] = expected_best_plot(study, expected, out / "expected_best.png")
        paths = [path.relative_to(study.study_dir).as_posix() for path in drawn.values()]
        return {"plot_files": pd.DataFrame({"name": list(drawn), "path": paths}, columns=["name", "path"])}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return "\n\n".join(f"![{r.name}]({r.path})" for r in computed["plot_files"].itertuples()) + "\n"


SECTION = Plots("plots", "Plots", kept=("plot_files",))  # each figure's name and path (from the study directory)
