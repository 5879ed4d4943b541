"""The confirmation phase: each arm's selected configuration re-run on the spec's fresh confirmation seeds.

An Optuna arm confirms its ``confirm.top_k`` best search trials by the selection rule
(``study.spec.ranking.confirmation_sources``: feasible trials that ran every epoch first; when none is feasible,
the best that ran every epoch, flagged ``source_feasible: false``), each on every confirmation seed. A PBT arm
confirms its best member's schedule (``search/<arm>/schedule.yaml``, written by ``study.phases.pbt``) on every
seed; its runs carry the schedule's arm section (``arm_config``).
"""

from __future__ import annotations

from pathlib import Path

from diffctl.config import load_config

from ..spec.plan import Planned
from ..spec.ranking import confirmation_sources
from ..spec.schema import StudySpec
from ..trialdir import CONFIRM, SCHEDULE_FILE, SEARCH, read_trials


def plan(spec: StudySpec, study_dir: Path, arm: str) -> Planned:
    """The Ray configs of an arm's confirmation runs, once its search has ended."""
    sources = confirmation_sources(spec, read_trials(study_dir / SEARCH / arm))
    notes = []
    if not sources:
        notes.append(f"confirm {arm}: no search trial ran every epoch; nothing to confirm")
    elif not sources[0][1]:
        notes.append(f"confirm {arm}: no feasible search trial; confirming the best infeasible one(s)")
    if spec.arms[arm].is_pbt:
        schedule = study_dir / SEARCH / arm / SCHEDULE_FILE
        if not sources or not schedule.is_file():
            return Planned([], notes)
        arm_config = load_config(schedule).arm.model_dump(mode="json")
        (member, feasible), = sources[:1]
        return Planned([{"phase": CONFIRM, "arm": arm, "params": dict(member.info.params), "seed": seed,
                         "source_trial": member.trial_id, "source_feasible": feasible, "arm_config": arm_config}
                        for seed in spec.confirm.seeds], notes)
    return Planned([{"phase": CONFIRM, "arm": arm, "params": dict(trial.info.params), "seed": seed,
                     "source_trial": trial.trial_id, "source_feasible": feasible}
                    for trial, feasible in sources for seed in spec.confirm.seeds], notes)
