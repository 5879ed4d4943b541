"""Tune's population based training of one replicate of a PBT arm (``study.phases.pbt``): synchronous, seeded,
ranked on the study's ranking rule, each member keeping its own name through an exploit.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from ...protocol.plan import member_name
from ...protocol.schema import MutationFloat, MutationInt, StudySpec
from ...trialdir import OK
from .draws import SCORE, clip, draw, initial_params, replicate_seed


class Resample:
    """A mutated key's range as Tune's PBT resamples it: a picklable callable drawing with ``random`` (which
    :meth:`MemberPBT._checkpoint_or_exploit` seeds for each perturbation)."""

    def __init__(self, mutation: MutationFloat | MutationInt) -> None:
        self.mutation = mutation

    def __call__(self) -> float | int:
        return draw(random, self.mutation)


class Clip:
    """PBT's ``custom_explore_fn``: a perturbed value (times a perturbation factor) back within its range."""

    def __init__(self, mutations: dict[str, MutationFloat | MutationInt]) -> None:
        self.mutations = mutations

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        config["params"] = {key: clip(self.mutations[key], value) if key in self.mutations else value
                            for key, value in config["params"].items()}
        return config


class MemberPBT(PopulationBasedTraining):
    """Tune's synchronous PBT over one arm's population, ranked on :data:`SCORE` at the multiples of the
    perturbation interval before the last epoch (time attribute: the record's ``epoch``).

    Tune keeps no scheduler state across ``Tuner.restore`` (it restores the scheduler as it was created): a
    restored member takes its rank, score and epoch from the checkpoint it continues from, and the next
    synchronisation is the first multiple of the interval above the least advanced member's epoch. A member that
    ends early (diverged, error) releases the members waiting for it."""

    _supports_buffered_results = False  # a perturbation needs each epoch's result as it comes

    def __init__(self, spec: StudySpec, arm: str, replicate: int = 0) -> None:
        pbt = spec.arms[arm].pbt
        super().__init__(
            time_attr="epoch", metric=SCORE, mode="max", perturbation_interval=pbt.perturbation_interval,
            hyperparam_mutations={"params": {key: Resample(m) for key, m in pbt.mutations.items()}},
            quantile_fraction=pbt.quantile_fraction, resample_probability=pbt.resample_probability,
            perturbation_factors=tuple(pbt.perturbation_factors), custom_explore_fn=Clip(pbt.mutations),
            log_config=False,  # trial.json records every exploit
            synch=True,
        )
        self._epochs, self._seed = spec.epochs, replicate_seed(pbt.seed, replicate)
        self._initial = initial_params(spec, arm, replicate)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        trial.config.setdefault("params", dict(self._initial[trial.config["member"]]))
        trial.config.setdefault("name", member_name(trial.config.get("replicate", 0), trial.config["member"]))
        super().on_trial_add(tune_controller, trial)
        saved = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
        if saved is not None and saved.checkpoint is not None and SCORE in (saved.metrics or {}):
            state = self._trial_state[trial]
            state.last_score, state.last_result = saved.metrics[SCORE], saved.metrics
            state.last_train_time = state.last_perturbation_time = saved.metrics["epoch"]
        times = [s.last_train_time for t, s in self._trial_state.items() if not t.is_finished()]
        interval = self._perturbation_interval
        self._next_perturbation_sync = interval * (min(times, default=0) // interval + 1)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        epoch = result.get("epoch", 0)
        if result.get("status") != OK or epoch >= self._epochs or epoch % self._perturbation_interval:
            return TrialScheduler.CONTINUE
        due = self._next_perturbation_sync
        decision = super().on_trial_result(tune_controller, trial, result)
        if self._next_perturbation_sync != due:  # the population was ranked at this epoch: the next one
            self._next_perturbation_sync = epoch + self._perturbation_interval
        return decision

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trial = super().choose_trial_to_run(tune_controller)
        trials = tune_controller.get_trials()
        waiting = [t for t in trials if t.status == Trial.PAUSED]
        if trial is None and waiting and not any(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials):
            # Every member left waits for one that has ended: rank them now.
            self.on_trial_result(tune_controller, waiting[0], self._trial_state[waiting[0]].last_result)
            trial = super().choose_trial_to_run(tune_controller)
        return trial

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        """Tune's exploit, the member keeping its own index and name (Tune's copy of the source's config carries the
        source's), then have the next experiment snapshot record it. Tune's PBT hands the member the other
        member's checkpoint without invalidating the trial's cached run state, so a snapshot taken before the
        member restarts kept its own checkpoint with the new config: a driver killed then resumed the member from
        its own state and the exploit was lost (seen with Ray 2.60)."""
        identity = {key: trial.config[key] for key in ("member", "name", "replicate") if key in trial.config}
        super()._exploit(tune_controller, trial, trial_to_clone)
        trial.set_config({**trial.config, **identity})  # Tune copied the source's config: the member stays itself
        trial.run_metadata.invalidate_cache()
        tune_controller._tune_controller._mark_trial_to_checkpoint(trial)

    def _checkpoint_or_exploit(self, trial: Trial, tune_controller: Any, upper: list, lower: list) -> None:
        with self._seeded(trial):
            super()._checkpoint_or_exploit(trial, tune_controller, upper, lower)

    @contextmanager
    def _seeded(self, trial: Trial) -> Iterator[None]:
        """Tune's PBT draws with the ``random`` module: seed it for this member and epoch, then put it back."""
        outside = random.getstate()
        epoch = self._trial_state[trial].last_train_time
        random.setstate(random.Random(f"{self._seed}/{trial.config['member']}/{epoch}").getstate())
        try:
            yield
        finally:
            random.setstate(outside)
