"""The report's opening lines: the study, when and by which code it was analysed, its objectives, constraints,
selection rule and confirmation design, which code ran its trials, and what the metrics measure
(``analysis.header``)."""

from __future__ import annotations

import time

from diffctl.provenance import code_version, describe

from ..header import code_line, metric_notes
from ..load import StudyTables
from .base import Computed, Section


class Header(Section):
    def render(self, study: StudyTables, computed: Computed) -> str:
        spec = study.spec
        objectives = ", ".join(f"{o.metric} ({o.mode})" for o in spec.objectives)
        constraints = "; ".join(spec.constraints) or "none"
        return f"""\
# Study `{spec.name}`

Directory `{study.shown_dir()}` · analysed {time.strftime("%Y-%m-%d %H:%M:%S %z")} with {describe(code_version())} ·
objectives {objectives} · constraints {constraints} · selection {spec.selection.metric} ({spec.selection.mode}),
the ranking rule of every stage (feasible first) · confirmation seeds {spec.confirm.seeds} × {spec.search_replicates}
search replicate(s) · {study.reference_text()}.

{code_line(study)}

{metric_notes(study)}
"""


SECTION = Header("header")
