"""Early stopping per arm: one ASHA (asynchronous successive halving) per arm's search, inside the study's one
Tuner. A single ASHA over every trial would compare arms at its rungs and stop one arm's trials for another
arm's results; here each arm's search trials meet only each other, and confirmation runs always run to the end.
A rung compares the first objective at its epoch, which is evaluated in full even when the spec thins the full
evaluation out (``eval.full_every``; ``study.full_eval`` adds the rung epochs to every trial's config).
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from .objectives import objective_key
from .progress import trial_place
from .spec import StudySpec
from .trialdir import SEARCH


class ArmASHA(FIFOScheduler):
    """Routes each search trial to its arm's :class:`ASHAScheduler`; other trials run first-in first-out."""

    _supports_buffered_results = False  # a rung decision needs each epoch's result as it comes

    def __init__(self, spec: StudySpec) -> None:
        super().__init__()
        assert spec.asha is not None
        first = spec.objectives[0]
        self._by_arm = {
            arm: ASHAScheduler(
                time_attr="epoch",  # Ray's training_iteration restarts with a trial restarted from its trainer.pt
                metric=objective_key(first.metric),
                mode=first.mode,
                max_t=spec.epochs,
                grace_period=spec.asha.grace_period,
                reduction_factor=spec.asha.reduction_factor,
            )
            for arm, arm_spec in spec.arms.items()
            if not arm_spec.is_pbt  # a PBT arm's members run in a Tuner of their own (study.pbt)
        }

    def _asha(self, trial: Any) -> ASHAScheduler | None:
        phase, arm = trial_place(trial.config)
        return self._by_arm.get(arm) if phase == SEARCH else None

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if (asha := self._asha(trial)) is not None:
            asha.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        asha = self._asha(trial)
        return TrialScheduler.CONTINUE if asha is None else asha.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if (asha := self._asha(trial)) is not None:
            asha.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if (asha := self._asha(trial)) is not None:
            asha.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{arm}: {asha.debug_string()}" for arm, asha in self._by_arm.items())
