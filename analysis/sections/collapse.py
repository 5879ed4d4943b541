"""Controller collapse: per controller trial, whether its weights sat at their floors or it lost reconstruction
(``tables/collapse.csv``), and the count per arm (``tables/collapse_by_arm.csv``; ``analysis.collapse``)."""

from __future__ import annotations

import pandas as pd

from .. import collapse
from ..load import StudyTables
from .base import Computed, Section
from .text import links, markdown_table


class Collapse(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        table = collapse.collapse_table(study)
        return {"collapse": table, "collapse_by_arm": collapse.collapse_by_arm(table)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return f"{links('collapse', 'collapse_by_arm')}\n\n{markdown_table(computed['collapse_by_arm'])}"


SECTION = Collapse("collapse", "Controller collapse", tables=("collapse", "collapse_by_arm"))
