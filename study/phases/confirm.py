"""The confirmation phase: each arm's selected configurations re-run on the spec's fresh confirmation seeds, one
set per search replicate.

An Optuna arm confirms, per replicate, its ``confirm.top_k`` best search trials by the selection rule
(``study.protocol.ranking.confirmation_sources``: feasible trials that ran every epoch first; when none is feasible,
the one nearest the constraints, flagged ``source_feasible: false``), each on every confirmation seed. The arm of
the spec's fixed-λ front also ranks the front's runs on its search seed (``study.phases.front``) beside each
replicate's search trials, defaults included: its pick is the best of its search, its defaults and its grid,
compared on the same seed. How many configurations each replicate confirms, and whether its runs replay an arm
section instead (``arm_config``), is the arm's search method's (``study.phases.base.SearchMethod``): a PBT arm
confirms, per replicate, its best member's schedule (``search/<arm>/schedule-r<k>.yaml``, written by
``study.phases.pbt``) on every seed. A run is named ``<source>-<seed>``.
"""

from __future__ import annotations

from pathlib import Path

from ..protocol.plan import confirm_name, replicate_of
from ..protocol.ranking import confirmation_sources
from ..protocol.reference import front_arm, search_seed
from ..protocol.schema import StudySpec
from ..trialdir import FRONT, SEARCH, read_trials
from .base import Phase, Place, Planned, TrialRequest, confirm_runs, search_method


class ConfirmPhase(Phase):
    name = "confirm"
    test_split = True

    def places(self, spec: StudySpec) -> list[Place]:
        """Every arm, after its search (and the front's arm after its front too: its grid competes for its pick)."""
        fronted = {spec.front.arm} if spec.front is not None else set()
        return [Place(self.name, arm, arm, ((SEARCH, arm), *(((FRONT, arm),) if arm in fronted else ())))
                for arm in spec.arms]

    def bound(self, spec: StudySpec, place: Place) -> int:
        return confirm_runs(spec, place.label)

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """An arm's confirmation runs, once its search has ended."""
        arm, method = place.label, search_method(spec, place.label)
        trials = read_trials(study_dir / SEARCH / arm)
        grid = []
        if front_arm(spec) == arm:  # the grid's runs on the search seed compete with the search trials
            seed = search_seed(spec, arm)
            grid = [t for t in read_trials(study_dir / FRONT / arm) if t.info.seed == seed]
        planned = Planned()
        for replicate in range(spec.search_replicates):
            mine = [t for t in trials if replicate_of(t.trial_id) == replicate] + grid
            sources = confirmation_sources(spec, mine, top_k=method.confirm_top_k(spec))
            where = f"confirm {arm}" + (f" (replicate {replicate})" if spec.search_replicates > 1 else "")
            if not sources:
                planned.notes.append(f"{where}: no search trial ran every epoch; nothing to confirm")
            elif not sources[0][1]:
                planned.notes.append(f"{where}: no feasible configuration found; confirming the one nearest the "
                                     "constraints")
            try:
                replay = method.replay(spec, study_dir, arm, replicate)
            except FileNotFoundError:  # nothing to replay: nothing to confirm
                continue
            planned.runs += [TrialRequest(phase=self.name, arm=arm, name=confirm_name(trial.trial_id, seed, replicate),
                                          params=trial.info.params, seed=seed, source_trial=trial.trial_id,
                                          source_feasible=feasible, replicate=replicate, arm_config=replay)
                             for trial, feasible in sources for seed in spec.confirm.seeds]
        return planned


PHASE = ConfirmPhase()
