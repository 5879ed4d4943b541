"""The confirmation phase: each arm's selected configurations re-run on the spec's fresh confirmation seeds, one
set per search replicate.

An Optuna arm confirms, per replicate, its ``confirm.top_k`` best search trials by the selection rule
(``study.spec.ranking.confirmation_sources``: feasible trials that ran every epoch first; when none is feasible,
the one nearest the constraints, flagged ``source_feasible: false``), each on every confirmation seed. The arm of
the spec's fixed-λ front also ranks the front's runs on its search seed (``study.phases.front``) beside each
replicate's search trials, defaults included: its pick is the best of its search, its defaults and its grid,
compared on the same seed. A PBT arm
confirms, per replicate, its best member's schedule (``search/<arm>/schedule-r<k>.yaml``, written by
``study.phases.pbt``) on every seed; its runs carry the schedule's arm section (``arm_config``). A run is named
``<source>-<seed>``.
"""

from __future__ import annotations

from pathlib import Path

from diffctl.config import load_config

from ..spec.plan import Planned, confirm_name, replicate_of
from ..spec.ranking import confirmation_sources
from ..spec.reference import front_arm, search_seed
from ..spec.schema import StudySpec
from ..trialdir import CONFIRM, FRONT, SEARCH, read_trials, schedule_file


def plan(spec: StudySpec, study_dir: Path, arm: str) -> Planned:
    """The Ray configs of an arm's confirmation runs, once its search has ended."""
    trials = read_trials(study_dir / SEARCH / arm)
    grid = []
    if front_arm(spec) == arm:  # the grid's runs on the search seed compete with the search trials
        seed = search_seed(spec, arm)
        grid = [t for t in read_trials(study_dir / FRONT / arm) if t.info.seed == seed]
    planned = Planned()
    for replicate in range(spec.search_replicates):
        mine = [t for t in trials if replicate_of(t.trial_id) == replicate] + grid
        sources = confirmation_sources(spec, mine)
        where = f"confirm {arm}" + (f" (replicate {replicate})" if spec.search_replicates > 1 else "")
        if not sources:
            planned.notes.append(f"{where}: no search trial ran every epoch; nothing to confirm")
        elif not sources[0][1]:
            planned.notes.append(f"{where}: no feasible configuration found; confirming the one nearest the "
                                 "constraints")
        extra = {}
        if spec.arms[arm].is_pbt:  # its best member's schedule, replayed
            schedule = study_dir / SEARCH / arm / schedule_file(replicate)
            if not schedule.is_file():
                continue
            sources, extra = sources[:1], {"arm_config": load_config(schedule).arm.model_dump(mode="json")}
        planned.runs += [{"phase": CONFIRM, "arm": arm, "name": confirm_name(trial.trial_id, seed, replicate),
                          "params": dict(trial.info.params), "seed": seed, "source_trial": trial.trial_id,
                          "source_feasible": feasible, "replicate": replicate, **extra}
                         for trial, feasible in sources for seed in spec.confirm.seeds]
    return planned
