"""Trajectory or destination: each adaptive arm against its distilled baselines (``tables/trajectory.csv``,
``tables/paired_vs_distilled.csv``), and the box check: could the reference arm's search reach the adaptive arms'
weights (``tables/box_check.csv``; ``analysis.trajectory``)."""

from __future__ import annotations

import pandas as pd

from .. import trajectory
from ..load import StudyTables
from .base import Computed, Section
from .text import link, links, markdown_table, paired_columns


def _selection_rows(study: StudyTables, paired: pd.DataFrame) -> pd.DataFrame:
    return paired[paired["metric"] == study.spec.selection.metric] if not paired.empty else paired


def _outside_first(box: pd.DataFrame) -> pd.DataFrame:
    return box.sort_values("inside", kind="stable") if not box.empty else box


class Trajectory(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        distilled = trajectory.paired_vs_distilled(study)
        return {"trajectory": trajectory.levels(study, distilled), "paired_vs_distilled": distilled,
                "box_check": trajectory.box_check(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return f"""\
Each adaptive arm against its distilled baselines (its own runs' weights and rho held constant from step 0 at
the last epoch's means, `final`, or the whole run's, `mean`; or replayed open loop epoch by epoch, `replay`),
paired by seed at every budget on {study.spec.selection.metric}, Holm-corrected over the three baselines.
{links("trajectory", "paired_vs_distilled")}

{markdown_table(computed["trajectory"])}
{markdown_table(paired_columns(_selection_rows(study, computed["paired_vs_distilled"])))}
### Box check: could the reference arm's search reach the adaptive arms' weights?

Epoch means of each adaptive arm's weights and rho on its confirmation runs against the search box of the
{study.reference_text()} (a key it does not search: its constant; none where it holds no constant weights).
{link("box_check")}

{markdown_table(_outside_first(computed["box_check"]))}"""


SECTION = Trajectory("trajectory", "Trajectory or destination",
                     tables=("trajectory", "paired_vs_distilled", "box_check"))
