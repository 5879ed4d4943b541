"""Against the reference arm: every other arm paired by seed with the reference at the whole run on every compared
metric, then at every budget on the selection metric, the area under its curve and the epochs to exact match
(``tables/paired_vs_fixed.csv``, ``analysis.compare.paired_vs_fixed``)."""

from __future__ import annotations

import pandas as pd

from ..compare import EPOCHS_TO_EXACT, EXACT_TARGET, auc_metric, full_budget, paired_vs_fixed
from ..load import StudyTables
from .base import Computed, Section
from .text import link, markdown_table, paired_columns


def _anytime(study: StudyTables, paired: pd.DataFrame) -> pd.DataFrame:
    names = [study.spec.selection.metric, auc_metric(study).metric, EPOCHS_TO_EXACT]
    return paired[paired["metric"].isin(names)] if not paired.empty else paired


class Reference(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"paired_vs_fixed": paired_vs_fixed(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        paired = computed["paired_vs_fixed"]
        return f"""\
Every other arm against the {study.reference_text()}, at the whole run, every compared metric.
{link("paired_vs_fixed")} (all budgets)

{markdown_table(paired_columns(full_budget(paired)))}
### Anytime: at every budget

The selection metric, the area under its curve (`{auc_metric(study).metric}`, its mean over the epochs so far)
and `{EPOCHS_TO_EXACT}` (the first epoch with val exact match >= {EXACT_TARGET:g} on both VAEs; a run that has
not reached it counts as the budget + 1, `censored_*` say how many).

{markdown_table(paired_columns(_anytime(study, paired)))}"""


SECTION = Reference("reference", "Against the reference arm, paired by seed", tables=("paired_vs_fixed",))
