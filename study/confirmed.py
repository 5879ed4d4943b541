"""An arm's confirmed configuration: of the search trials its confirmation runs repeat, the one the ranking of
``study.spec.ranking.rank_sources`` puts first over those runs (most feasible confirmation seeds, then fewest
failed, then best mean selection metric) — the rule the analysis uses for the arm's representing runs — and what
an ablation option makes of it. The phases made around it (retune, ablation) read both here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diffctl.config import ConfigError, config_from_dict

from .spec.configs import trial_config
from .spec.constraints import is_finite_number
from .spec.errors import SpecError
from .spec.ranking import ConfirmedRun, is_feasible, rank_sources
from .spec.schema import StudySpec
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


RUNS, SAME, NOT_APPLICABLE = "runs", "same as the centre", "not applicable"


def _arm_section_inert(config: dict[str, Any]) -> dict[str, str]:
    """The arm keys that change nothing under the rest of a validated config (diffctl's ``inert_keys``)."""
    options = config_from_dict(config).arm
    return options.inert_keys() if hasattr(options, "inert_keys") else {}


def option_status(spec: StudySpec, arm: str, params: dict[str, Any], seed: int,
                  overrides: dict[str, Any]) -> tuple[str, str | None]:
    """(status, reason) of an ablation option around a centre (the arm's ``params`` on ``seed``): ``runs``, ``same
    as the centre`` (the same resolved config) or ``not applicable`` — diffctl refuses the config (the reason is
    its one-line error), or the option changes only keys that have no effect under the rest of it (a lookahead
    cadence under ``objective: same_loss``; the reason names them)."""
    centre = config_from_dict(trial_config(spec, arm, params, seed)).to_dict()
    try:
        option = config_from_dict(trial_config(spec, arm, params, seed, overrides)).to_dict()
    except (ConfigError, SpecError) as exc:
        return NOT_APPLICABLE, str(exc)
    if option == centre:
        return SAME, None
    changed = {k for k in set(centre) | set(option) if centre.get(k) != option.get(k)}
    if changed == {"arm"}:
        inert = _arm_section_inert(option)
        keys = sorted(k for k in set(centre["arm"]) | set(option["arm"]) if centre["arm"].get(k) != option["arm"].get(k))
        if keys and all(k in inert for k in keys):
            why = "; ".join(f"arm.{k} has no effect under arm.{inert[k].replace(' ', ': ', 1)}" for k in keys)
            return NOT_APPLICABLE, why
    return RUNS, None
