"""Fairness: equal compute and equal freedom against the reference arm (``tables/compute.csv``,
``tables/freedom.csv``, ``analysis.fairness``), then the pruning audit (``tables/pruning_audit.csv``,
``tables/audit_summary.csv``, ``analysis.audit``): what early stopping threw away."""

from __future__ import annotations

import pandas as pd

from .. import audit, fairness
from ..load import StudyTables
from .base import Computed, Section
from .text import link, markdown_table


class Fairness(Section):
    def compute(self, study: StudyTables, computed: Computed) -> dict[str, pd.DataFrame]:
        audited = audit.pruning_audit(study)
        return {"compute": fairness.compute_table(study), "freedom": fairness.freedom_table(study),
                "pruning_audit": audited, "audit_summary": audit.audit_summary(audited)}

    def render(self, study: StudyTables, computed: Computed) -> str:
        return f"""\
Equal compute, equal freedom, and what early stopping threw away. {link("compute")} · {link("freedom")} ·
{link("pruning_audit")} · {link("audit_summary")} · the box check is below (Trajectory or destination).

{fairness.fairness_lines(study, computed["compute"], computed["freedom"])}
### Pruning audit

Search trials that early stopping stopped, drawn among the best scored at their last rung and trained to the last
epoch on their search seed: would the ranking rule have picked one over its replicate's pick, and by how much?

{audit.audit_lines(study, computed["pruning_audit"])}
{markdown_table(computed["pruning_audit"])}"""


SECTION = Fairness("fairness", "Fairness", tables=("compute", "freedom", "pruning_audit", "audit_summary"))
