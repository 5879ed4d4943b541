"""Population based training: each PBT arm's exploits (``tables/pbt_lineage.csv``), its best member and schedule,
and its cost against the other arms' searches (``analysis.pbt``)."""

from __future__ import annotations

import pandas as pd

from .. import pbt
from ..load import StudyTables
from .base import Computed, Section
from .text import link


class PopulationBasedTraining(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"pbt_lineage": pbt.lineage_table(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return ("Each PBT arm's exploits (a member continuing from a better member's state with perturbed values) "
                f"and its cost.\n{link('pbt_lineage')}\n\n{pbt.pbt_section(study, computed['pbt_lineage'])}")


SECTION = PopulationBasedTraining("pbt", "Population based training", tables=("pbt_lineage",))
