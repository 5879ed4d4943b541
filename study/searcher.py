"""The Optuna search of one arm: Ray's ``OptunaSearch`` over the arm's define-by-run space, a seeded TPE
sampler, and the study's Optuna storage (``<study>/optuna.journal``, one Optuna study per arm, named by the arm
label) so that ``optuna.load_study`` and optuna-dashboard read it afterwards.

``ArmSearch`` adds what the plain searcher does not store: each Optuna trial carries the Ray trial id
(user attr ``ray_trial_id``), its final ``status``, the epochs it ran (``epochs``) and the spec's constraints
(``Trial.set_constraint``), so that Optuna's feasibility-aware TPE and ``best_trial`` see the same feasibility
the study's selection uses.
"""

from __future__ import annotations

import fcntl
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

# Import Optuna directly first: Ray's wrapper hides a broken Optuna install behind "Optuna must be installed!".
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from .objectives import constraint_values, objective_key
from .space import SearchSpace
from .spec import StudySpec

JOURNAL_FILE = "optuna.journal"


class JournalFlock:
    """The journal's write lock, held with flock(2) on ``optuna.journal.flock``: the kernel releases it when
    its holder dies. Optuna's own lock files outlive a driver killed while appending, and make the resumed
    driver wait out a 30 s grace period before taking them over (seen by tests/test_kill_anywhere.py)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def journal_storage(study_dir: Path) -> JournalStorage:
    """The study's Optuna storage (a journal file beside the Ray experiments)."""
    lock = JournalFlock(study_dir / f"{JOURNAL_FILE}.flock")
    return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL_FILE), lock_obj=lock))


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
