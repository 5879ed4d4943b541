"""The search phase of an Optuna arm: its define-by-run space, a seeded TPE sampler, the Optuna study it tells
(in the study's journal, ``study.journal``) and its early stopping (one ASHA per arm).

``SearchSpace`` samples one flat parameter set of the arm's space: ``trial.suggest_*`` for every key whose
``when`` conditions hold, in sampling order. Categorical choices that are lists or mappings (a subset of
controller statistics) reach Optuna as their JSON text and the trial config as the value itself. Ray's
OptunaSearch pickles its space with the searcher state (resume reloads it), hence a class rather than a closure;
it runs in the driver for every suggestion, so it stays cheap.

``ArmSearch`` is Ray's ``OptunaSearch`` over that space, plus what the plain searcher does not store: each
Optuna trial carries the Ray trial id (user attr ``ray_trial_id``), its final ``status``, the epochs it ran
(``epochs``) and the spec's constraints (``Trial.set_constraint``), so that Optuna's feasibility-aware TPE and
``best_trial`` see the same feasibility the study's selection uses.

``ArmASHA`` gives each arm's search trials an ASHA of their own inside the study's one Tuner: a single ASHA over
every trial would compare arms at its rungs and stop one arm's trials for another arm's results; confirmation
and later runs always run to the end. A rung compares the first objective at its epoch, which is evaluated in
full even when the spec thins the full evaluation out (``study.spec.configs`` adds the rung epochs).
"""

from __future__ import annotations

import json
import warnings
import zlib
from typing import Any

# Import Optuna directly first: Ray's wrapper hides a broken Optuna install behind "Optuna must be installed!".
import optuna
from optuna.storages import JournalStorage
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from ..spec.ranking import constraint_values, objective_key
from ..spec.schema import CategoricalDistribution, Distribution, FloatDistribution, StudySpec
from ..spec.space import is_active, sampling_order
from ..trialdir import SEARCH, trial_place


def suggest(trial: Any, key: str, dist: Distribution) -> Any:
    """Sample one key with the matching ``trial.suggest_*`` call."""
    if isinstance(dist, CategoricalDistribution):
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in dist.choices):
            return trial.suggest_categorical(key, dist.choices)
        # Optuna takes scalar choices only: lists and mappings travel as their JSON text.
        encoded = [json.dumps(c, sort_keys=True) for c in dist.choices]
        return json.loads(trial.suggest_categorical(key, encoded))
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)


class SearchSpace:
    """An arm's search space in define-by-run form; calling it samples one flat parameter set.

    Example::

        space = SearchSpace(spec.arms["barrier"].space)
        params = space(optuna.create_study().ask())   # {'arm.warmup': 'hold', 'arm.warmup_epochs': 3}
    """

    def __init__(self, space: dict[str, Distribution]) -> None:
        self.space = {key: space[key] for key in sampling_order(space)}

    def __call__(self, trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, dist in self.space.items():
            if is_active(dist, params):
                params[key] = suggest(trial, key, dist)
        return params


RANDOM, MODEL = "random", "model"  # how a search trial's parameters were drawn (TPE start-up or its model)


def arm_sampler_seed(spec: StudySpec, arm: str) -> int:
    """The arm's own sampler seed: the spec's ``sampler_seed`` moved by a hash of the arm label, so that two
    arms with the same key and range do not draw identical values (one seed for all made the fixed arm's and
    the uncertainty arm's rho both 0.30138...), and adding an arm changes no other arm's draws."""
    return (spec.sampler_seed + zlib.crc32(arm.encode("utf-8"))) % 2**31


def tpe_sampler(spec: StudySpec, arm: str) -> optuna.samplers.TPESampler:
    """Seeded TPE with the arm's start-up trials (:meth:`~study.spec.ArmSpec.startup`); ``group=True`` models each
    conditional sub-space on its own (it needs multivariate). Optuna 5's constant liar (on by default) stays on:
    trials running at once are modelled as pending, so concurrent suggestions spread out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group is "experimental"
        return optuna.samplers.TPESampler(
            seed=arm_sampler_seed(spec, arm), n_startup_trials=spec.arms[arm].startup(), multivariate=True,
            group=True, constant_liar=True,
        )


class ArmSearch(OptunaSearch):
    """OptunaSearch for one arm of a study; the Optuna study is named by the arm label."""

    def __init__(self, spec: StudySpec, arm: str, storage: JournalStorage) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per arm is noise here
        metrics = [objective_key(o.metric) for o in spec.objectives]
        modes = [o.mode for o in spec.objectives]
        single = len(metrics) == 1
        super().__init__(
            space=SearchSpace(spec.arms[arm].space),
            metric=metrics[0] if single else metrics,
            mode=modes[0] if single else modes,
            sampler=tpe_sampler(spec, arm),
            study_name=arm,
            storage=storage,
        )
        self._study_spec = spec
        self._startup = spec.arms[arm].startup()
        self.sampling: dict[str, str] = {}  # Ray trial id -> RANDOM or MODEL
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names([o.metric for o in spec.objectives])

    def suggest(self, trial_id: str) -> dict | None:
        # TPE draws at random while the study has fewer finished trials than its start-up count (Optuna 5,
        # TPESampler._sample_relative): count them as it does, before it asks.
        finished = self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        params = super().suggest(trial_id)
        self.sampling[trial_id] = RANDOM if len(finished) < self._startup else MODEL
        self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        self._ot_trials[trial_id].set_user_attr("sampling", self.sampling[trial_id])
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and trial_id not in self._completed_trials:
            if _told(ot_trial):
                # Told by a driver killed after the tell but before its searcher snapshot: the journal has the
                # end already, and telling it again would only make Optuna refuse ("Cannot tell a COMPLETE trial").
                self._completed_trials.add(trial_id)
                return
            epochs = int(result.get("epoch", 0)) if result else 0
            status = "error" if error else (result or {}).get("status", "stopped")
            if status == "ok" and epochs < self._study_spec.epochs:
                status = "stopped"
            ot_trial.set_user_attr("status", status)
            ot_trial.set_user_attr("epochs", epochs)
            if result and not error:
                already = ot_trial.constraints  # set before a kill that came before the tell
                for key, value in constraint_values(self._study_spec, result).items():
                    if key not in already:
                        ot_trial.set_constraint(key, value)
        super().on_trial_complete(trial_id, result=result, error=error)

    def adopt(self, trial_id: str, result: dict | None, error: bool) -> None:
        """Take over a trial that a killed driver asked and ran after its last experiment snapshot (the restored
        searcher does not know it): tell Optuna its end unless the journal already has it."""
        study = self._ot_study
        for frozen in study.get_trials(deepcopy=False):
            if frozen.user_attrs.get("ray_trial_id") == trial_id:
                self._ot_trials[trial_id] = optuna.Trial(study, frozen._trial_id)
                self.on_trial_complete(trial_id, result=result, error=error)
                return


def _told(ot_trial: Any) -> bool:
    """Whether the journal already holds this trial's end (told before the driver was killed and resumed)."""
    return ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished()


def close_orphans(storage: JournalStorage, arm: str) -> int:
    """Mark FAIL the Optuna trials of a finished arm that are still RUNNING: asked by a driver that was killed
    before Ray recorded the trial, they were never run. Returns how many."""
    study = optuna.load_study(study_name=arm, storage=storage)
    orphans = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for trial in orphans:
        storage.set_trial_user_attr(trial._trial_id, "status", "orphan")
        study.tell(trial.number, state=TrialState.FAIL)
    return len(orphans)


def stopped_reason(epoch: Any) -> str:
    return f"stopped early by ASHA after epoch {epoch}"


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
            if not arm_spec.is_pbt  # a PBT arm's members run in a Tuner of their own (phases.pbt)
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
