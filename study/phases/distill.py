"""The distilled baselines of an adaptive arm: trajectory or destination?

After an arm's confirmation runs, each finished run is re-trained on its own seed with its weights and rho taken
from its records instead of from the arm: held constant from step 0 at the last epoch's means (``final``) or the
whole run's means (``mean``) with the fixed arm, or replayed open loop, epoch by epoch, with the piecewise arm
(``replay``: the same schedule, no feedback; it replays the learning rate too where the source's moved).
Everything else — model, data, optimiser, evaluation, the source's other sampled keys, the seed — is the
source run's. If a constant baseline matches the arm, the arm only found a destination; if the replay matches
it but the constants do not, its schedule did the work; if it beats its own replay, its feedback did.

Each variant is an arm label of its own, ``<arm>.distilled_<variant>``, in the phase ``distill``
(``<study>/distill/<label>/<trial_id>/``). Distilled are the arms whose weights or rho can move: every arm kind
but ``fixed``, and a PBT arm (``study.phases.pbt``: its confirmation runs replay a schedule; ``replay`` would
repeat them, so it has ``final`` and ``mean`` only, with its best member's last learning rate). ``confirm.distill``
lists the variants; an empty list turns the phase off (:func:`distilled_arms`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffctl.arms.piecewise import CONTROL_KEYS, constant_from_records, schedule_from_records

from ..protocol.plan import distilled_label
from ..protocol.schema import StudySpec
from ..trialdir import CONFIRM, OK, read_metrics, read_trials
from .base import DISTILL_KEYS, Phase, Place, Planned, TrialRequest, confirm_runs, search_method


def _moves(records: list[dict[str, Any]], key: str) -> bool:
    values = {r.get(key) for r in records if r.get("status") == OK}
    return len(values) > 1


def distilled_arm_config(records: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """The ``arm`` section of a distilled run of a source run with these records."""
    if variant == "replay":
        keys = (*CONTROL_KEYS, *(("lr",) if _moves(records, "lr") else ()))
        return {"kind": "piecewise", "segments": schedule_from_records(records, keys)}
    return constant_from_records(records, variant)


def distilled_arms(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(label, source arm, variant) of every distilled baseline the spec asks for, in spec order: each variant of
    ``confirm.distill`` its search method distils (a PBT arm's without ``replay``: its confirmation runs are the
    replay) for an arm whose weights or rho can move."""
    found = []
    for arm in spec.arms:
        method = search_method(spec, arm)
        if method.moves(spec, arm):
            found += [(distilled_label(arm, v), arm, v) for v in method.distill_variants(spec)]
    return found


class DistillPhase(Phase):
    name = "distill"
    test_split = True
    record_keys = DISTILL_KEYS

    def places(self, spec: StudySpec) -> list[Place]:
        return [Place(self.name, label, arm, ((CONFIRM, arm),)) for label, arm, _ in distilled_arms(spec)]

    def bound(self, spec: StudySpec, place: Place) -> int:
        return confirm_runs(spec, place.source)  # one run per confirmation run

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """One distilled baseline (``place``: its source arm and variant): its variant of every confirmation run of
        the source arm that finished, each named as that run."""
        _, arm, variant = next(d for d in distilled_arms(spec) if d[0] == place.label)
        return Planned([TrialRequest(
            phase=self.name, arm=place.label, name=run.trial_id, params=run.info.params, seed=run.info.seed,
            source_trial=run.trial_id, replicate=run.info.replicate,
            source_feasible=run.info.source_feasible if run.info.source_feasible is not None else True,
            source_arm=arm, distill=variant, arm_config=distilled_arm_config(read_metrics(run.dir), variant),
        ) for run in read_trials(study_dir / CONFIRM / arm) if run.status == OK])


PHASE = DistillPhase()
