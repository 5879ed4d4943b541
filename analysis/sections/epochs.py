"""Epochs to reach the target: per arm, how soon its representing runs reach val exact match >= 0.99 on both VAEs
(``tables/epochs_to_target.csv``, ``analysis.quality.epochs_to_target``)."""

from __future__ import annotations

import pandas as pd

from ..load import StudyTables
from ..quality import epochs_to_target
from .base import Computed, Section
from .text import link, markdown_table


class EpochsToTarget(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"epochs_to_target": epochs_to_target(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return f"{link('epochs_to_target')}\n\n{markdown_table(computed['epochs_to_target'])}"


SECTION = EpochsToTarget("epochs_to_target", "Epochs to reach the target", tables=("epochs_to_target",))
