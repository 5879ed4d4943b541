"""An arm's confirmed configuration: of the search trials its confirmation runs repeat, the one the ranking of
``study.protocol.ranking.rank_sources`` puts first over those runs (most feasible confirmation seeds, then fewest
failed, then best mean selection metric) — the rule the analysis uses for the arm's representing runs. The
phases made around it (retune, ablation) read it here; what an ablation option makes of it is
``study.ablation_options``.
"""

from __future__ import annotations

import math
from pathlib import Path

from .protocol.constraints import is_finite_number
from .protocol.ranking import ConfirmedRun, is_feasible, rank_sources
from .protocol.schema import StudySpec
from .trialdir import CONFIRM, OK, SEARCH, TrialSummary, read_trials


def confirmed_configuration(spec: StudySpec, study_dir: Path, arm: str) -> tuple[str, list[TrialSummary]] | None:
    """The arm's confirmed configuration (its source search trial) and its confirmation runs; None when the arm
    has no confirmation run."""
    runs = [t for t in read_trials(study_dir / CONFIRM / arm) if not t.abandoned]
    confirmed = []
    for run in runs:
        finished = run.status == OK and run.last.get("status") == OK
        value = run.last.get(spec.selection.metric)
        confirmed.append(ConfirmedRun(str(run.info.source_trial), run.info.seed, finished,
                                      finished and is_feasible(spec, run.last),
                                      float(value) if finished and is_finite_number(value) else math.nan))
    ranked = rank_sources(confirmed, spec.confirm.seeds, spec.selection.mode)
    if not ranked:
        return None
    source = ranked[0]["source"]
    return source, [run for run, c in zip(runs, confirmed) if c.source == source]


def source_search_trial(study_dir: Path, arm: str, source: str) -> TrialSummary | None:
    """The search trial a confirmed configuration repeats (its params, its search seed, its final record)."""
    return next((t for t in read_trials(study_dir / SEARCH / arm) if t.trial_id == source), None)
