"""Quality frontier: per arm, how many representing runs reconstruct on both VAEs and the quality they reach
(``tables/quality_frontier.csv``, ``analysis.quality.quality_frontier``)."""

from __future__ import annotations

import pandas as pd

from ..compare import EXACT_TARGET
from ..load import StudyTables
from ..quality import quality_frontier
from .base import Computed, Section
from .text import link, markdown_table


class QualityFrontier(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        return {"quality_frontier": quality_frontier(study)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return f"""\
Per arm, how many of its representing runs reconstruct on both VAEs (final val exact match >= {EXACT_TARGET:g}),
and over those the mean [95% t-interval] of {study.spec.selection.metric}, with the untied concordance and triplet r
of each VAE (r's ceiling is about 0.75, the untied concordance's 1.0). {link("quality_frontier")}

{markdown_table(computed["quality_frontier"])}"""


SECTION = QualityFrontier("quality", "Quality frontier", tables=("quality_frontier",))
