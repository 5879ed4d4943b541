"""The one searcher of a study's Tuner: every arm's Optuna search with exactly its budget, then each arm's
confirmation runs (its best configurations on the spec's fresh seeds) once that arm's search has ended.

Why one Tuner for the whole study rather than one per arm and phase: each Tuner starts its own trial actors,
which import torch and warm up (measured ~3 s per Tuner on 2 cores, more than a short trial lasts), and a
phase's last trial leaves idle CPUs until the next Tuner starts. Fairness does not need separate Tuners: each
arm keeps its own :class:`~study.searcher.ArmSearch` (its own Optuna study and TPE state), and the arm's
searcher alone is asked for that arm's trials, exactly ``budget`` times — one shared search over an "arm"
choice would let TPE starve arms; this does not.

Order: the search trials of the arms in spec order (an arm's TPE sees its earlier trials exactly as in a Tuner
of its own), then the confirmation runs of every arm whose search trials have all ended. Each trial's Ray
config says where it belongs: ``{"phase", "arm", "params"}`` (+ ``seed``, ``source_trial``,
``source_feasible`` for a confirmation run). The searcher's state (what was asked, what ended, the
confirmation plans) is pickled into Tune's experiment snapshot, so ``Tuner.restore`` continues it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from ray.tune.search import Searcher

from .objectives import is_feasible, selection_value, tune_metrics
from .progress import live_progress
from .searcher import ArmSearch
from .spec import StudySpec
from .trialdir import CONFIRM, ERROR, FINISHED, OK, SEARCH, TrialSummary, read_trials


def confirmation_sources(spec: StudySpec, trials: list[TrialSummary]) -> list[tuple[TrialSummary, bool]]:
    """The ``top_k`` search trials of an arm by the selection rule, among feasible trials that ran every epoch;
    when none is feasible, the best of those that ran every epoch (flagged ``False``)."""
    full = [t for t in trials if t.status == OK and t.info.get("epochs_done") == spec.epochs]
    feasible = [t for t in full if is_feasible(spec, t.last)]
    pool = feasible or full
    ranked = sorted(pool, key=lambda t: -selection_value(spec, t.last))  # stable: ties keep trial-id order
    return [(t, bool(feasible)) for t in ranked[: spec.confirm.top_k]]


def confirmation_runs(spec: StudySpec, study_dir: Path, arm: str) -> list[dict[str, Any]]:
    """The Ray configs of an arm's confirmation runs: each selected configuration with every confirmation seed."""
    sources = confirmation_sources(spec, read_trials(study_dir / SEARCH / arm))
    progress = live_progress()
    if progress is not None and not sources:
        progress.notice(f"confirm {arm}: no search trial ran every epoch; nothing to confirm")
    elif progress is not None and not sources[0][1]:
        progress.notice(f"confirm {arm}: no feasible search trial; confirming the best infeasible one(s)")
    return [
        {
            "phase": CONFIRM,
            "arm": arm,
            "params": dict(trial.info["params"]),
            "seed": seed,
            "source_trial": trial.trial_id,
            "source_feasible": feasible,
        }
        for trial, feasible in sources
        for seed in spec.confirm.seeds
    ]


class StudySearch(Searcher):
    """Ray Tune searcher of a whole study (see the module docstring)."""

    def __init__(self, spec: StudySpec, study_dir: Path, storage: JournalStorage) -> None:
        super().__init__()
        self._spec = spec
        self._study_dir = str(study_dir)
        self._arms = {arm: ArmSearch(spec, arm, storage) for arm in spec.arms}
        self._asked = {arm: 0 for arm in spec.arms}  # search trials suggested per arm
        self._live: dict[str, tuple[str, str]] = {}  # trial id -> (phase, arm) of trials not ended yet
        self._plans: dict[str, list[dict[str, Any]]] = {}  # arm -> its confirmation runs, once its search ended
        self._given = {arm: 0 for arm in spec.arms}  # confirmation runs suggested per arm
        self._ended: set[str] = set()  # trial ids that ended
        self._closed: set[tuple[str, str]] = set()  # (phase, arm) whose every trial has ended

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # metrics and modes are the spec's, set on every arm's searcher

    def search_ended(self, arm: str) -> bool:
        """Whether every search trial of ``arm`` was asked and has ended."""
        return self._asked[arm] == self._spec.arms[arm].budget and not self._live_in(SEARCH, arm)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for arm, arm_spec in self._spec.arms.items():
            if self._asked[arm] < arm_spec.budget:
                if self._asked[arm] == 0:
                    _phase_started(SEARCH, arm, arm_spec.budget, arm_spec.budget)
                params = self._arms[arm].suggest(trial_id)
                self._asked[arm] += 1
                self._live[trial_id] = (SEARCH, arm)
                return {"phase": SEARCH, "arm": arm, "params": params}
        waiting = False
        for arm in self._spec.arms:
            if not self.search_ended(arm):
                waiting = True
                continue
            if arm not in self._plans:
                self._plans[arm] = confirmation_runs(self._spec, Path(self._study_dir), arm)
                _phase_started(CONFIRM, arm, len(self._plans[arm]), self._spec.confirm_runs_per_arm())
            while self._given[arm] < len(self._plans[arm]):
                run = self._plans[arm][self._given[arm]]
                self._given[arm] += 1
                if self._confirmed_already(run):
                    continue
                self._live[trial_id] = (CONFIRM, arm)
                return dict(run)
            self._check_confirmed(arm)
        return None if waiting else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        phase, arm = self._live.get(trial_id, (None, None))
        if phase == SEARCH:
            self._arms[arm].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._ended.add(trial_id)
        phase, arm = self._live.pop(trial_id, (None, None))
        if phase == SEARCH:
            self._arms[arm].on_trial_complete(trial_id, result=result, error=error)
            if self.search_ended(arm):
                self._close(SEARCH, arm)
        elif phase == CONFIRM:
            self._check_confirmed(arm)

    def _live_in(self, phase: str, arm: str) -> bool:
        return any(place == (phase, arm) for place in self._live.values())

    def _check_confirmed(self, arm: str) -> None:
        if self._given[arm] == len(self._plans[arm]) and not self._live_in(CONFIRM, arm):
            self._close(CONFIRM, arm)

    def _close(self, phase: str, arm: str) -> None:
        """Record once that every trial of a phase of one arm has ended."""
        if (phase, arm) not in self._closed:
            self._closed.add((phase, arm))
            progress = live_progress()
            if progress is not None:
                progress.end_phase(phase, arm)

    def _confirmed_already(self, run: dict[str, Any]) -> bool:
        """Whether a run of this configuration and seed ended in an earlier session, unknown to the snapshot
        this searcher was restored from (see :meth:`restore`)."""
        return any(
            t.status in FINISHED and not t.abandoned
            and (t.info.get("source_trial"), t.info.get("seed")) == (run["source_trial"], run["seed"])
            for t in read_trials(Path(self._study_dir) / CONFIRM / run["arm"])
        )

    def _adopt_unknown_trials(self) -> None:
        """Count the search trials that a killed driver asked and that ended after its last snapshot: without
        this, the restored searcher would ask for them again and an arm would exceed its budget. (A trial that
        was still running is abandoned instead: Ray does not know it, and the searcher asks for a new one.)"""
        for arm in self._spec.arms:
            for trial in read_trials(Path(self._study_dir) / SEARCH / arm):
                known = trial.trial_id in self._ended or trial.trial_id in self._live
                if known or trial.status not in FINISHED or trial.abandoned:
                    continue
                self._asked[arm] += 1
                self._ended.add(trial.trial_id)
                error = trial.status == ERROR
                record = {**trial.last, **tune_metrics(self._spec, trial.last)} if trial.last and not error else None
                self._arms[arm].adopt(trial.trial_id, record, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        self._adopt_unknown_trials()


def _phase_started(phase: str, arm: str, total: int, counted: int) -> None:
    progress = live_progress()
    if progress is not None:
        progress.start_phase(phase, arm, total, replaces=counted)
