"""The pruning audit: what early stopping threw away, trained to the end. Neither Ray Tune nor Optuna reports it;
this is the evidence that the stopping rule did not decide the answer (``analysis.audit`` reads it).

Once an arm's search has ended, per replicate, its search trials that early stopping stopped are ranked by the
last rung they reached, then by their score there (``study.protocol.ranking.rung_score``); ``audit.per_arm`` of the
best ``2 x audit.per_arm`` of them (all when fewer) are drawn with a generator seeded by ``audit.seed``, the arm
and the replicate. Each is trained again from the start, with its own params and search seed, to the last
epoch: its records repeat the stopped trial's up to its rung (the run is deterministic), then go on. A run is
named as the search trial it audits (``audit/<arm>/r0-0011/``).
"""

from __future__ import annotations

import random
from pathlib import Path

from ..protocol.plan import replicate_of
from ..protocol.ranking import rung_score
from ..protocol.schema import StudySpec
from ..trialdir import SEARCH, STOPPED, TrialSummary, read_trials
from .base import Phase, Place, Planned, TrialRequest, search_method


def candidates(spec: StudySpec, trials: list[TrialSummary]) -> list[TrialSummary]:
    """The stopped trials, best first: the latest rung reached, then the score there; ties in name order."""
    stopped = [t for t in trials if t.status == STOPPED and t.last]
    return sorted(stopped, key=lambda t: (-t.last["epoch"], -rung_score(spec, t.last), t.trial_id))


def drawn(spec: StudySpec, arm: str, replicate: int, trials: list[TrialSummary]) -> list[TrialSummary]:
    """The audited trials of one replicate of an arm, in name order."""
    per_arm = spec.audit.per_arm
    pool = candidates(spec, trials)[: 2 * per_arm]
    rng = random.Random(f"{spec.audit.seed}/{arm}/{replicate}")
    return sorted(rng.sample(pool, min(per_arm, len(pool))), key=lambda t: t.trial_id)


class AuditPhase(Phase):
    name = "audit"

    def places(self, spec: StudySpec) -> list[Place]:
        """Every arm whose search early stopping stops, when the spec has an audit."""
        if spec.audit is None:
            return []
        return [Place(self.name, arm, arm, ((SEARCH, arm),)) for arm in spec.arms if search_method(spec, arm).prunes(spec)]

    def bound(self, spec: StudySpec, place: Place) -> int:
        return spec.audit.per_arm * spec.search_replicates

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """An arm's audit runs, once its search has ended."""
        arm, trials = place.label, read_trials(study_dir / SEARCH / place.label)
        planned = Planned()
        for replicate in range(spec.search_replicates):
            mine = drawn(spec, arm, replicate, [t for t in trials if replicate_of(t.trial_id) == replicate])
            if not mine:
                planned.notes.append(f"audit {arm}: no search trial of replicate {replicate} was stopped early")
            planned.runs += [TrialRequest(phase=self.name, arm=arm, name=t.trial_id, params=t.info.params,
                                          seed=t.info.seed, source_trial=t.trial_id, replicate=replicate)
                             for t in mine]
        return planned


PHASE = AuditPhase()
